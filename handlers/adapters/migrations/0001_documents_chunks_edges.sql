-- The store: documents by S3 identity, their chunks with vectors, and the graph between them.
-- {dimension} is the embedding dimension chosen at the first migration (recorded in filequeue_meta).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE filequeue_meta (
    name text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket text NOT NULL,
    key text NOT NULL,
    version_id text,
    etag text,
    sequencer text,
    event_time timestamptz,
    sha256 text,
    content_type text,
    size bigint,
    title text,
    pages integer,
    status text NOT NULL CHECK (status IN ('ready', 'failed')),
    error_code text,
    error text,
    chunk_count integer NOT NULL DEFAULT 0,
    embedding_model text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket, key)
);

-- A deleted key keeps its last sequencer so that a late, older ObjectCreated cannot resurrect it.
CREATE TABLE tombstones (
    bucket text NOT NULL,
    key text NOT NULL,
    version_id text,
    sequencer text,
    event_time timestamptz,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key)
);

CREATE TABLE chunks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    page integer NOT NULL,
    char_start integer NOT NULL,
    char_end integer NOT NULL,
    text text NOT NULL,
    embedding_model text NOT NULL,
    embedding_dimension integer NOT NULL,
    embedding vector({dimension}) NOT NULL,
    UNIQUE (document_id, ordinal)
);

CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);

-- Nodes are documents or chunks; every edge is owned by the document whose transaction wrote it,
-- so replacing or deleting a document removes exactly its edges.
CREATE TABLE edges (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    source_kind text NOT NULL CHECK (source_kind IN ('document', 'chunk')),
    source_id bigint NOT NULL,
    relation text NOT NULL CHECK (relation IN ('has_chunk', 'next', 'similar', 'references')),
    target_kind text NOT NULL CHECK (target_kind IN ('document', 'chunk')),
    target_id bigint NOT NULL,
    weight real NOT NULL DEFAULT 1,
    UNIQUE (source_kind, source_id, relation, target_kind, target_id)
);

CREATE INDEX edges_target ON edges (target_kind, target_id, relation);
CREATE INDEX edges_owner ON edges (owner_document_id);
