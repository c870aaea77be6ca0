-- Each document's BM25 "more like this" ranking, kept beside its neighbour list: the linking pass
-- ranks every due document first, then chooses each one's neighbours reading its candidates'
-- rankings too (two documents that share many nearest neighbours are closer than their scores alone
-- say). `ranked` holds the other documents best first, `weights` their relative scores.
ALTER TABLE similar_lists
    ADD COLUMN ranked bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN weights real[] NOT NULL DEFAULT '{}';

-- Lists computed before this migration have no ranking: the next pass computes them again.
INSERT INTO similar_pending (document_id) SELECT document_id FROM similar_lists;
