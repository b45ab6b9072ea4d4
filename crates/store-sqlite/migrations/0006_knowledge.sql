-- Knowledge. A document belongs to one chatbot, or (chatbot_id NULL) to the
-- whole organization as its strategic context. `blob_key` names the original
-- in the blob store; the label is for people and is never used as a path.
CREATE TABLE documents (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id    BLOB REFERENCES chatbots (id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    label         TEXT NOT NULL,
    url           TEXT,
    blob_key      TEXT,
    bytes         INTEGER NOT NULL DEFAULT 0,
    content_type  TEXT,
    content_hash  TEXT,
    status        TEXT NOT NULL,
    error         TEXT,
    chunk_count   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX documents_org ON documents (org_id, chatbot_id, created_at);
-- Adding a URL again (or crawling it again) re-ingests the same document.
CREATE UNIQUE INDEX documents_url ON documents (chatbot_id, url) WHERE url IS NOT NULL;

-- A crawl of a site. `state` is the crawler's frontier and what it has seen,
-- saved after every page so that a crawl survives restarts.
CREATE TABLE crawls (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id    BLOB NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    root_url      TEXT NOT NULL,
    max_pages     INTEGER NOT NULL,
    max_depth     INTEGER NOT NULL,
    status        TEXT NOT NULL,
    pages_done    INTEGER NOT NULL DEFAULT 0,
    pages_failed  INTEGER NOT NULL DEFAULT 0,
    pages_queued  INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    note          TEXT,
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX crawls_org ON crawls (org_id, chatbot_id, created_at);

-- `seq` is the full-text index's rowid: an INTEGER PRIMARY KEY, so that
-- VACUUM never renumbers it under the index.
CREATE TABLE chunks (
    seq          INTEGER PRIMARY KEY,
    org_id       BLOB NOT NULL,
    chatbot_id   BLOB,
    document_id  BLOB NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal      INTEGER NOT NULL,
    heading      TEXT NOT NULL,
    text         TEXT NOT NULL,
    -- little-endian f32s, when an embedder is configured; searched exactly
    embedding    BLOB,
    UNIQUE (document_id, ordinal)
) STRICT;
CREATE INDEX chunks_scope ON chunks (org_id, chatbot_id);

-- Full text over headings and passages, kept in step by triggers. Porter
-- stemming, so that "refunds" finds "refund" (as PostgreSQL's `english` does).
-- `scope` holds tokens naming the passage's organization (`o` + id) and its
-- chatbot (`b` + id, or `context`), so that a search matches only its own
-- tenant's passages inside the index: with a common word, filtering after
-- the match would score every tenant's passages first.
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    heading, text, scope,
    content = '',
    contentless_delete = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, heading, text, scope) VALUES (
        new.seq, new.heading, new.text,
        'o' || lower(hex(new.org_id)) || ' ' ||
            CASE WHEN new.chatbot_id IS NULL THEN 'context' ELSE 'b' || lower(hex(new.chatbot_id)) END
    );
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM chunks_fts WHERE rowid = old.seq;
END;
