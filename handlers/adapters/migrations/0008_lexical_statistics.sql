-- BM25's statistics inside PostgreSQL (handlers.ops.lexical ranks with them).
--
-- A chunk's length in BM25's sense: the number of lexeme occurrences in its tsvector (stop words do
-- not count). Computed from `tsv` after the BEFORE trigger filled it, copied by merges like any
-- column (generated columns are computed again on insert, which costs one pass over the tsvector).
CREATE FUNCTION lexical_length(document tsvector) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN (SELECT coalesce(sum(coalesce(array_length(occurrence.positions, 1), 1)), 0)::integer
            FROM unnest(document) AS occurrence);

ALTER TABLE chunks ADD COLUMN lexemes integer GENERATED ALWAYS AS (lexical_length(tsv)) STORED;

-- Per-segment statistics, the way Lucene keeps them per segment: a sealed segment's rows never
-- change except by deletion, so its document frequencies are counted once (ts_stat) and kept here.
-- The growing and live areas, and a segment not counted yet, are counted exactly at query time.
CREATE TABLE lexical_segments (
    segment integer PRIMARY KEY,
    chunks bigint NOT NULL,
    lexemes bigint NOT NULL
);

CREATE TABLE lexical_segment_terms (
    lexeme text NOT NULL,
    segment integer NOT NULL,
    chunks integer NOT NULL,
    PRIMARY KEY (lexeme, segment)
);

-- What was deleted from a sealed segment since its statistics were counted: one row per chunk,
-- appended by the deleting transaction itself (no shared row is updated, so writers never wait on
-- each other), and subtracted at query time through its own GIN index. Recounting a segment
-- removes its rows.
CREATE TABLE lexical_removed (
    segment integer NOT NULL,
    tsv tsvector NOT NULL,
    lexemes integer NOT NULL
);
CREATE INDEX lexical_removed_segment ON lexical_removed (segment);
CREATE INDEX lexical_removed_tsv ON lexical_removed USING gin (tsv);

CREATE FUNCTION chunks_note_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only sealed segments have counted statistics; rows of other areas are counted live.
    IF starts_with(TG_TABLE_NAME, 'chunks_segment_') THEN
        INSERT INTO lexical_removed (segment, tsv, lexemes) VALUES (OLD.segment, OLD.tsv, OLD.lexemes);
    END IF;
    RETURN NULL;
END
$$;

-- A row trigger on the partitioned table is cloned onto every partition, those attached later
-- included, so it fires however the row is deleted (through the parent, a partition or a cascade).
CREATE TRIGGER chunks_note_removed AFTER DELETE ON chunks
    FOR EACH ROW EXECUTE FUNCTION chunks_note_removed();
