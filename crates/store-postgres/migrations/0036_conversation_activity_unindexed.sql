-- Every batch of a conversation's messages rewrites its row (its
-- `last_active_at`). With that column indexed, each rewrite added an entry
-- to every index of the table; without it, the rewrite changes no indexed
-- column and, with room on the row's page, is a HOT update (the new version
-- on the same page, no index touched). The index's only reader was the
-- hourly retention sweep, which now walks an organization's conversations
-- in creation order (`conversations_recent`).
-- A fifth of each page is left free for those updates; pages already full
-- get that room as they are rewritten (ARCHITECTURE.md, "Messages stored
-- together on PostgreSQL"). SQLite keeps its index: it has no HOT updates,
-- and without the index it measured no faster.
DROP INDEX conversations_active;
ALTER TABLE conversations SET (fillfactor = 80);
