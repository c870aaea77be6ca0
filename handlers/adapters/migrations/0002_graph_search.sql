-- The graph between documents and full-text search over chunks.

-- The document vector: the normalised mean of its chunk vectors, written by the same transaction
-- that writes the chunks. `similar` edges are found through its HNSW index.
ALTER TABLE documents ADD COLUMN embedding vector({dimension});
CREATE INDEX documents_embedding_hnsw ON documents USING hnsw (embedding vector_cosine_ops);

-- 'simple' lower-cases and keeps every word: no stemming and no stop words. The store holds text in
-- any language (the corpus has Japanese, Arabic, Czech, ...), and a language's dictionary would
-- stem other languages' words wrongly; the full-text side of hybrid search is there for exact
-- terms (names, codes, identifiers), while meaning and word forms are the vector side's job.
ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED;
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);

-- What a document mentions and the names it goes by (both normalised by handlers.stages.edges).
-- Kept for ready documents only, so a document that arrives later finds those that mention it.
CREATE TABLE document_mentions (
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    mention text NOT NULL,
    PRIMARY KEY (document_id, mention)
);
CREATE INDEX document_mentions_mention ON document_mentions (mention);

CREATE TABLE document_names (
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    name text NOT NULL,
    PRIMARY KEY (document_id, name)
);
CREATE INDEX document_names_name ON document_names (name);
