-- Deleting messages no longer makes the word index rewrite itself inside
-- the deleting transaction (FTS5's 'deletemerge', by default a tenth of a
-- part's entries marked deleted): under an erasure of many messages such a
-- commit held every other write up for hundreds of milliseconds. The store
-- rewrites the index in short steps after an erasure or a retention run
-- instead (crates/store-sqlite/src/words.rs), so that no deleted message's
-- words stay in it.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('deletemerge', 100);
