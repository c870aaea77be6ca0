-- Chunks become a LIST-partitioned table of areas, so that ingestion does not pay HNSW insertion per row.
--   segment 0  chunks_growing: new chunks land here in the document's transaction; no vector index,
--              searched exactly (a sort over its rows).
--   segment 1  chunks_live: the chunks stored so far, with their HNSW index kept; with
--              FILEQUEUE_VECTOR_INDEX=live new chunks land here and pay the live insertion.
--   segment 2+ chunks_segment_N: sealed by compaction, each with an HNSW index built once.
-- One `ORDER BY embedding <=> $1 LIMIT k` on the parent is planned as a Merge Append of the
-- per-partition index scans and a sort of the unindexed partition, so the search SQL is unchanged.
-- The HNSW indexes live on the partitions, never on the parent: a parent index would be created on
-- every partition, the growing one included.

ALTER TABLE chunks RENAME TO chunks_live;
ALTER INDEX chunks_embedding_hnsw RENAME TO chunks_live_embedding_hnsw;
ALTER INDEX chunks_tsv_gin RENAME TO chunks_live_tsv_gin;
ALTER TABLE chunks_live DROP CONSTRAINT chunks_pkey, DROP CONSTRAINT chunks_document_id_ordinal_key;

-- PostgreSQL 16 has no identity columns on partitioned tables: ids come from a sequence that
-- continues after the identity's last value, so chunk ids stay unique across all areas.
ALTER TABLE chunks_live ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE chunks_id_seq AS bigint;
SELECT setval('chunks_id_seq', coalesce((SELECT max(id) FROM chunks_live), 0) + 1, false);
ALTER TABLE chunks_live ALTER COLUMN id SET DEFAULT nextval('chunks_id_seq');

-- The constraint lets ATTACH skip its validation scan.
ALTER TABLE chunks_live ADD COLUMN segment integer NOT NULL DEFAULT 1 CONSTRAINT chunks_live_segment CHECK (segment = 1);

CREATE TABLE chunks (
    id bigint NOT NULL DEFAULT nextval('chunks_id_seq'),
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    page integer NOT NULL,
    char_start integer NOT NULL,
    char_end integer NOT NULL,
    text text NOT NULL,
    embedding_model text NOT NULL,
    embedding_dimension integer NOT NULL,
    embedding vector({dimension}) NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
    segment integer NOT NULL DEFAULT 0,
    PRIMARY KEY (id, segment)
) PARTITION BY LIST (segment);
ALTER SEQUENCE chunks_id_seq OWNED BY chunks.id;

CREATE INDEX chunks_document ON chunks (document_id, ordinal);
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);

ALTER TABLE chunks ATTACH PARTITION chunks_live FOR VALUES IN (1);
CREATE TABLE chunks_growing PARTITION OF chunks FOR VALUES IN (0);

-- Vectors stay in the row (MAIN: compressed or moved out only as a last resort), so an exact scan
-- of the growing area reads the heap pages alone; the text and its tsvector are toasted first.
-- The existing rows of chunks_live keep their storage until rewritten.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN;

-- Sealed segments are numbered from here; a number is never reused, so a half-built segment left
-- by a crash can never be mistaken for a finished one.
CREATE SEQUENCE chunk_segment_seq AS integer START 2;
