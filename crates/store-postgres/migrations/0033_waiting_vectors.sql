-- A passage's vector waits here until the `index_vectors` job puts it into
-- `chunks.embedding`, and so into the HNSW index: adding a vector to the
-- graph costs far more than storing its passage (at 200,000 passages about
-- 7 ms against 0.3), and it no longer holds up the transaction that stores a
-- document's passages. A waiting vector is searched exactly (`search_vector`).
CREATE TABLE waiting_vectors (
    chunk_id    bigint PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
    org_id      uuid NOT NULL,
    chatbot_id  uuid,
    document_id uuid NOT NULL,
    embedding   vector NOT NULL
);
CREATE INDEX waiting_vectors_scope ON waiting_vectors (org_id, chatbot_id);
CREATE INDEX waiting_vectors_document ON waiting_vectors (document_id, chunk_id);
