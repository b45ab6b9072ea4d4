-- Full-text search weighs each word of a question by how rare it is among
-- the passages searched, and ranks only the passages that hold its rarer
-- words (`search_text`). Ranking every passage that shared any word with
-- the question took 298 ms at 100,000 passages.
--
-- How many passages of a chatbot (or of its organization's shared
-- documents: chatbot_id NULL) hold each word, and how many there are.
-- Triggers on `chunks` keep both, so that every way passages come and go
-- (ingestion, a document, chatbot or organization deleted and the cascade
-- that follows) keeps them right in the same transaction.
CREATE TABLE passage_scopes (
    org_id     uuid NOT NULL,
    chatbot_id uuid,
    passages   integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (org_id, chatbot_id)
);
CREATE TABLE passage_words (
    org_id     uuid NOT NULL,
    chatbot_id uuid,
    lexeme     text NOT NULL,
    passages   integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (org_id, chatbot_id, lexeme)
);

CREATE FUNCTION count_passage_words() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    -- The scope's row first: every change to one chatbot's counts waits
    -- here, so two transactions never take word rows in different orders.
    INSERT INTO passage_scopes AS s (org_id, chatbot_id, passages)
    SELECT org_id, chatbot_id, sign * count(*) FROM changed
    GROUP BY org_id, chatbot_id ORDER BY org_id, chatbot_id
    ON CONFLICT (org_id, chatbot_id) DO UPDATE SET passages = s.passages + excluded.passages;

    INSERT INTO passage_words AS w (org_id, chatbot_id, lexeme, passages)
    SELECT c.org_id, c.chatbot_id, l.lexeme, sign * count(*) FROM changed c, unnest(c.search) l
    GROUP BY c.org_id, c.chatbot_id, l.lexeme ORDER BY c.org_id, c.chatbot_id, l.lexeme
    ON CONFLICT (org_id, chatbot_id, lexeme) DO UPDATE SET passages = w.passages + excluded.passages;

    IF sign < 0 THEN
        DELETE FROM passage_words w USING (SELECT DISTINCT org_id, chatbot_id FROM changed) c
        WHERE w.org_id = c.org_id AND w.chatbot_id IS NOT DISTINCT FROM c.chatbot_id
          AND w.passages <= 0;
        DELETE FROM passage_scopes s USING (SELECT DISTINCT org_id, chatbot_id FROM changed) c
        WHERE s.org_id = c.org_id AND s.chatbot_id IS NOT DISTINCT FROM c.chatbot_id
          AND s.passages <= 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER chunks_counted_in AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION count_passage_words();
CREATE TRIGGER chunks_counted_out AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION count_passage_words();

INSERT INTO passage_scopes (org_id, chatbot_id, passages)
SELECT org_id, chatbot_id, count(*) FROM chunks GROUP BY org_id, chatbot_id;
INSERT INTO passage_words (org_id, chatbot_id, lexeme, passages)
SELECT c.org_id, c.chatbot_id, l.lexeme, count(*) FROM chunks c, unnest(c.search) l
GROUP BY c.org_id, c.chatbot_id, l.lexeme;

-- Ranking reads each candidate's `search`: kept in the row rather than out
-- of line (the passage's text goes out of line instead, read only for the
-- few results), it costs one page read a candidate, not three. Rows written
-- before keep theirs out of line until they are written again (a document
-- ingested again).
ALTER TABLE chunks ALTER COLUMN search SET STORAGE MAIN;
