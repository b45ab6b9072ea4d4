-- Knowledge. A document belongs to one chatbot, or (chatbot_id NULL) to the
-- whole organization as its strategic context. `blob_key` names the original
-- in the blob store; the label is for people and is never used as a path.
CREATE TABLE documents (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id    uuid REFERENCES chatbots (id) ON DELETE CASCADE,
    source        text NOT NULL,
    label         text NOT NULL,
    url           text,
    blob_key      text,
    bytes         bigint NOT NULL DEFAULT 0,
    content_type  text,
    content_hash  text,
    status        text NOT NULL,
    error         text,
    chunk_count   bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX documents_org ON documents (org_id, chatbot_id, created_at);
-- Adding a URL again (or crawling it again) re-ingests the same document.
CREATE UNIQUE INDEX documents_url ON documents (chatbot_id, url) WHERE url IS NOT NULL;

-- A crawl of a site. `state` is the crawler's frontier and what it has seen,
-- saved after every page so that a crawl survives restarts.
CREATE TABLE crawls (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chatbot_id    uuid NOT NULL REFERENCES chatbots (id) ON DELETE CASCADE,
    root_url      text NOT NULL,
    max_pages     integer NOT NULL,
    max_depth     integer NOT NULL,
    status        text NOT NULL,
    pages_done    integer NOT NULL DEFAULT 0,
    pages_failed  integer NOT NULL DEFAULT 0,
    pages_queued  integer NOT NULL DEFAULT 0,
    bytes         bigint NOT NULL DEFAULT 0,
    note          text,
    state         jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX crawls_org ON crawls (org_id, chatbot_id, created_at);

-- Full text over headings (weighted higher) and passages, with the `english`
-- configuration's stemming, as SQLite's porter tokenizer does. Vectors are of
-- any length (the embedder decides); an HNSW index per length is created when
-- an embedder is configured (see `prepare_vectors`).
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE chunks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       uuid NOT NULL,
    chatbot_id   uuid,
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    heading      text NOT NULL,
    text         text NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', heading), 'A') || to_tsvector('english', text)
    ) STORED,
    embedding    vector,
    embedding_dims integer GENERATED ALWAYS AS (vector_dims(embedding)) STORED,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_scope ON chunks (org_id, chatbot_id);
CREATE INDEX chunks_search ON chunks USING gin (search);
