-- The conversation list's text filter: a word index of messages' text, so
-- that a word few messages hold is found without reading every message.
-- `scope` holds tokens naming the message's organization (`o` + id) and
-- conversation (`c` + id), so a search matches inside its own tenant, and
-- can test one conversation alone; `conversation_id` is returned with each
-- match. No diacritics are folded, as PostgreSQL's `simple` does not.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text, scope, conversation_id UNINDEXED,
    content = '',
    contentless_delete = 1,
    contentless_unindexed = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);

-- The index's rowid of each message, kept so that deleting or changing the
-- message deletes its entry (the index keeps no text, but its words are the
-- message's: an erased message leaves none behind). Not the messages
-- table's rowid, which VACUUM may renumber.
ALTER TABLE messages ADD COLUMN search_seq INTEGER;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (text, scope, conversation_id) VALUES (
        new.text,
        'o' || lower(hex(new.org_id)) || ' c' || lower(hex(new.conversation_id)),
        new.conversation_id
    );
    UPDATE messages SET search_seq = last_insert_rowid() WHERE id = new.id;
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.search_seq;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.search_seq;
    INSERT INTO messages_fts (text, scope, conversation_id) VALUES (
        new.text,
        'o' || lower(hex(new.org_id)) || ' c' || lower(hex(new.conversation_id)),
        new.conversation_id
    );
    UPDATE messages SET search_seq = last_insert_rowid() WHERE id = new.id;
END;

-- The messages already stored, oldest first, numbered.
CREATE TEMP TABLE indexing (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
INSERT INTO temp.indexing (id) SELECT id FROM messages ORDER BY created_at, id;
INSERT INTO messages_fts (rowid, text, scope, conversation_id)
SELECT i.seq, m.text, 'o' || lower(hex(m.org_id)) || ' c' || lower(hex(m.conversation_id)), m.conversation_id
FROM temp.indexing i JOIN messages m ON m.id = i.id;
UPDATE messages SET search_seq = (SELECT i.seq FROM temp.indexing i WHERE i.id = messages.id);
DROP TABLE temp.indexing;
