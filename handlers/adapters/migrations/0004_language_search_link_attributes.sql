-- Full-text search that works for questions, and references that say how sure they are.

-- The full-text side of hybrid search now stems English words and drops English stop words, so a
-- question ("how do I feed a starter") matches "feeding the starter". Words of other languages go
-- through the same stemmer on both sides (document and query), so exact terms still meet.
DROP INDEX chunks_tsv_gin;
ALTER TABLE chunks DROP COLUMN tsv;
ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);

-- What an edge knows beyond its weight: for `references`, how the mention was written ("link",
-- "uri", "key", "name"), the mention itself, and for a bare name shared by several documents
-- `ambiguous: true` with the number of candidates.
ALTER TABLE edges ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';

-- Mentions and names are typed: `uri` (s3://bucket/key, what links, S3 URIs and paths resolve to)
-- or `name` (a bare file name, resolved at link time, preferring the mentioning document's folder).
-- Rows of the first version are typed by their shape; a key without a bucket takes its document's bucket.
ALTER TABLE document_mentions ADD COLUMN kind text NOT NULL DEFAULT 'name' CHECK (kind IN ('uri', 'name'));
ALTER TABLE document_mentions DROP CONSTRAINT document_mentions_pkey;
ALTER TABLE document_mentions ADD PRIMARY KEY (document_id, kind, mention);
INSERT INTO document_mentions (document_id, kind, mention)
SELECT mention.document_id, 'uri',
       CASE WHEN mention.mention LIKE 's3://%' THEN mention.mention
            ELSE 's3://' || lower(document.bucket) || '/' || mention.mention END
FROM document_mentions AS mention JOIN documents AS document ON document.id = mention.document_id
WHERE mention.mention LIKE '%/%'
ON CONFLICT DO NOTHING;
DELETE FROM document_mentions WHERE kind = 'name' AND mention LIKE '%/%';

ALTER TABLE document_names ADD COLUMN kind text NOT NULL DEFAULT 'name' CHECK (kind IN ('uri', 'name'));
ALTER TABLE document_names DROP CONSTRAINT document_names_pkey;
ALTER TABLE document_names ADD PRIMARY KEY (document_id, kind, name);
UPDATE document_names SET kind = 'uri' WHERE name LIKE 's3://%';
DELETE FROM document_names WHERE kind = 'name' AND name LIKE '%/%';
