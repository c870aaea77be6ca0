-- A merge copies each chunk's full-text vector instead of computing it again: `tsv` becomes a plain
-- column, filled by a trigger when a row arrives without one (the writers' COPY names no tsv) or
-- when its text changes. Rows that compaction copies from one segment into another bring theirs:
-- computing it again was more than half of a merge's copying (bench/merge_cost.py).
-- Existing values stay as they are; the trigger computes them exactly as the generated column did.
ALTER TABLE chunks ALTER COLUMN tsv DROP EXPRESSION;

CREATE FUNCTION chunks_fill_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tsv IS NULL OR (TG_OP = 'UPDATE' AND NEW.text IS DISTINCT FROM OLD.text) THEN
        NEW.tsv := to_tsvector('english', NEW.text);
    END IF;
    RETURN NEW;
END
$$;

-- On the partitioned table, so every partition gets it, those attached later included.
CREATE TRIGGER chunks_fill_tsv BEFORE INSERT OR UPDATE OF text, tsv ON chunks
    FOR EACH ROW EXECUTE FUNCTION chunks_fill_tsv();
