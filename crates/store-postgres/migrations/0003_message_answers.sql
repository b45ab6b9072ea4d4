-- A reply names the last user message it answered; the user messages after it
-- in its conversation are the ones still waiting for an answer.
ALTER TABLE messages ADD COLUMN answers uuid;
