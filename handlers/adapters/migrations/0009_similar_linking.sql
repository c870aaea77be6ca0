-- `similar` edges are computed off the ingest path, in bulk, by a linking pass (handlers.adapters.graph
-- `link_pending`, run by compaction and `filequeue graph --link`).
--
-- The documents whose neighbours need computing: appended by the ingest transaction (the stored
-- document itself, and the former neighbours of a replaced or deleted one) with plain inserts, so two
-- writers never wait on each other over a shared row; the pass removes a document's rows in the
-- transaction that links it. No foreign key: a row for a document deleted since is simply skipped.
CREATE TABLE similar_pending (
    document_id bigint NOT NULL
);
CREATE INDEX similar_pending_document ON similar_pending (document_id);

-- When each document's neighbour list was computed: the number of linkable documents then. A list
-- computed when the store held n documents is computed again once it holds 2n (the doubling rule), so
-- an early document is not left with the neighbours it could find in a small store, and each document
-- is recomputed O(log N) times as the store grows.
CREATE TABLE similar_lists (
    document_id bigint PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    linked_among bigint NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX similar_lists_linked_among ON similar_lists (linked_among);

-- Documents stored before this migration were linked at ingest (by a fixed cosine threshold): all are
-- linked again by the first pass.
INSERT INTO similar_pending (document_id) SELECT id FROM documents WHERE status = 'ready';
