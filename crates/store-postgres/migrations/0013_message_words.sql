-- The conversation list's text filter: a word index of messages' text, so
-- that a word few messages hold is found without reading every message.
-- Punctuation is made a space first, so that words are runs of letters and
-- digits as on SQLite ("ZX-4471" is "zx" and "4471", not a signed number);
-- `simple`: lowercased, no stemming, no stop words. The words are stored,
-- so that a scan that tests them (PostgreSQL's choice for a word many
-- messages hold) does not split each message's text again.
ALTER TABLE messages ADD COLUMN words tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(text, '[[:punct:][:space:]]+', ' ', 'g'))
) STORED;
CREATE INDEX messages_words ON messages USING gin (words);
