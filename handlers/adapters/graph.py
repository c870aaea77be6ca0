"""The document graph: `similar` and `references` edges, rebuilt inside the document's transaction.

Every function takes a psycopg connection inside the caller's transaction (whose connection has the
pgvector types registered) and never commits.

Ownership. An edge between two documents is written by the transaction of whichever document was
linked, in both directions, owned by that document. Replacing or deleting a document first removes
every edge that touches it, whoever owns it (`postgres._clear_content`), and linking then writes
the current ones; so both sides of a pair are updated when either side changes or goes away.

Concurrency. Two documents linked at the same moment hold only their own advisory locks. Their
edge inserts are idempotent on the edges' unique key and sorted by (source, target), so both may
write the same pair without an error and without waiting on each other in opposite orders. What
one transaction cannot see is the other's uncommitted document: an edge between two documents
committed at the same moment can be missing until either of them changes again.

`similar` is a k-nearest-neighbour relation, which is not symmetric: B may be among A's nearest
while A is not among B's. The pair exists if either side found the other when it was linked; when
A changes, the pair comes back only if B is still among A's nearest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers.stages.edges import document_names, find_mentions

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    import psycopg

# Walk relations: `referenced_by` is a `references` edge followed backwards.
RELATIONS = ("similar", "references", "referenced_by")
# The walk enumerates paths (a recursive CTE cannot see which documents other paths reached), so
# its cost grows as degree ** hops; a few hops are what a reader of the graph needs anyway.
MAX_HOPS = 4

_SIMILAR = """
WITH nearest AS (
    SELECT id, 1 - (embedding <=> (SELECT embedding FROM documents WHERE id = %(id)s)) AS similarity
    FROM documents
    WHERE id <> %(id)s AND status = 'ready' AND embedding IS NOT NULL
    ORDER BY embedding <=> (SELECT embedding FROM documents WHERE id = %(id)s)
    LIMIT %(top_k)s
)
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT %(id)s, 'document', source_id, 'similar', 'document', target_id, similarity
FROM (
    SELECT %(id)s::bigint AS source_id, id AS target_id, similarity FROM nearest
    UNION ALL
    SELECT id, %(id)s::bigint, similarity FROM nearest
) AS pairs
WHERE similarity >= %(threshold)s
ORDER BY source_id, target_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id)
    DO UPDATE SET weight = EXCLUDED.weight, owner_document_id = EXCLUDED.owner_document_id
"""

_REFERENCES = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT %(id)s, 'document', source_id, 'references', 'document', target_id, 1
FROM (
    SELECT %(id)s::bigint AS source_id, document_id AS target_id FROM document_names
    WHERE name = ANY(%(mentions)s::text[]) AND document_id <> %(id)s
    UNION
    SELECT document_id, %(id)s::bigint FROM document_mentions
    WHERE mention = ANY(%(names)s::text[]) AND document_id <> %(id)s
) AS pairs
ORDER BY source_id, target_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id) DO NOTHING
"""

# The walk steps over document-level edges in both directions of `references`. NOT MATERIALIZED
# lets the planner push `source_id = <current document>` into each arm and use the edge indexes.
_WALK = """
WITH RECURSIVE steps AS NOT MATERIALIZED (
    SELECT source_id, target_id, relation, weight FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation IN ('similar', 'references')
    UNION ALL
    SELECT target_id, source_id, 'referenced_by', weight FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation = 'references'
),
walk AS (
    SELECT target_id AS document_id, relation, weight, 1 AS hops, source_id AS via,
           ARRAY[source_id, target_id] AS path
    FROM steps WHERE source_id = %(start)s AND relation = ANY(%(relations)s::text[])
    UNION ALL
    SELECT step.target_id, step.relation, step.weight, walk.hops + 1, step.source_id, walk.path || step.target_id
    FROM walk JOIN steps AS step ON step.source_id = walk.document_id
    WHERE walk.hops < %(hops)s AND step.relation = ANY(%(relations)s::text[]) AND step.target_id <> ALL(walk.path)
)
SELECT relation, bucket, key, hops, weight, via FROM (
    SELECT DISTINCT ON (walk.relation, walk.document_id)
           walk.relation, document.bucket, document.key, walk.hops, walk.weight,
           CASE WHEN walk.hops > 1 THEN previous.key END AS via
    FROM walk
    JOIN documents AS document ON document.id = walk.document_id
    JOIN documents AS previous ON previous.id = walk.via
    ORDER BY walk.relation, walk.document_id, walk.hops, walk.weight DESC
) AS reached
ORDER BY relation, hops, weight DESC, key
"""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A document reached from the start: by which relation, in how many hops, and from where."""

    relation: str
    bucket: str
    key: str
    hops: int
    weight: float
    via: str | None


def link_document(
    conn: psycopg.Connection[Any],
    document_id: int,
    *,
    bucket: str,
    key: str,
    text: str,
    top_k: int,
    threshold: float,
) -> None:
    """Set the document vector and write the document's `similar` and `references` edges.

    Expects the document's chunks written and its previous edges, names and mentions removed.
    """
    update_document_vectors(conn, [document_id])
    link_similar(conn, document_id, top_k=top_k, threshold=threshold)
    link_references(conn, document_id, names=document_names(bucket, key), mentions=find_mentions(text))


def update_document_vectors(
    conn: psycopg.Connection[Any], document_ids: Collection[int], *, column: str = "embedding"
) -> None:
    """Set each document's vector in `column` to the normalised mean of its chunks' `column`.

    A mean of length zero (opposite chunk vectors) has no direction and leaves NULL. pgvector 0.6
    has `avg(vector)` but no `l2_normalize`, so the division goes through a real[].
    """
    from psycopg import sql

    conn.execute(
        sql.SQL(
            "UPDATE documents AS document SET {column} = ("
            " SELECT CASE WHEN vector_norm(mean) > 0 THEN ("
            "  SELECT array_agg(value / vector_norm(mean) ORDER BY position)"
            "  FROM unnest(mean::real[]) WITH ORDINALITY AS component(value, position))::vector END"
            " FROM (SELECT avg(chunk.{column}) AS mean FROM chunks AS chunk"
            "  WHERE chunk.document_id = document.id) AS average)"
            " WHERE document.id = ANY(%s)"
        ).format(column=sql.Identifier(column)),
        (list(document_ids),),
    )


def link_similar(conn: psycopg.Connection[Any], document_id: int, *, top_k: int, threshold: float) -> None:
    """Link the document both ways with its `top_k` nearest ready documents at or above `threshold`.

    The nearest are found through the HNSW index on the document vectors; the weight is the cosine
    similarity. A pair that exists already takes the new weight and this document as its owner.
    """
    if top_k > 0:
        conn.execute(_SIMILAR, {"id": document_id, "top_k": top_k, "threshold": threshold})


def relink_similar(conn: psycopg.Connection[Any], document_id: int, *, top_k: int, threshold: float) -> None:
    """Recompute the document's own `similar` edges (after the vectors changed under it)."""
    conn.execute("DELETE FROM edges WHERE owner_document_id = %s AND relation = 'similar'", (document_id,))
    link_similar(conn, document_id, top_k=top_k, threshold=threshold)


def link_references(
    conn: psycopg.Connection[Any], document_id: int, *, names: Iterable[str], mentions: Iterable[str]
) -> None:
    """Link the document to the documents it mentions and from the documents that mention it.

    Its names and mentions are kept, so a document that arrives later is linked in its own turn.
    """
    names, mentions = sorted(names), sorted(mentions)
    conn.execute(_REFERENCES, {"id": document_id, "names": names, "mentions": mentions})
    conn.execute(
        "INSERT INTO document_names (document_id, name) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (document_id, names),
    )
    conn.execute(
        "INSERT INTO document_mentions (document_id, mention) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
        (document_id, mentions),
    )


def find_document(conn: psycopg.Connection[Any], key: str, bucket: str | None = None) -> int:
    """The id of the document stored under `key` (in `bucket`, needed if several buckets hold the key).

    Raises LookupError if there is none, or several and no bucket was given.
    """
    rows = conn.execute(
        "SELECT id, bucket FROM documents WHERE key = %s AND (%s::text IS NULL OR bucket = %s) ORDER BY bucket",
        (key, bucket, bucket),
    ).fetchall()
    if not rows:
        raise LookupError(f"no document is stored under key {key!r}" + (f" in bucket {bucket!r}" if bucket else ""))
    if len(rows) > 1:
        buckets = ", ".join(str(row[1]) for row in rows)
        raise LookupError(f"key {key!r} is stored in several buckets ({buckets}); choose one with --bucket")
    return int(rows[0][0])


def neighbours(
    conn: psycopg.Connection[Any], document_id: int, *, hops: int = 1, relations: Collection[str] = RELATIONS
) -> list[Neighbour]:
    """Documents reachable from `document_id` in at most `hops` steps over the given relations.

    Each document is listed once per relation by which it was reached, at its fewest hops.
    """
    if not 1 <= hops <= MAX_HOPS:
        raise ValueError(f"hops must be in 1..{MAX_HOPS}, got {hops}")
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise ValueError(f"unknown relations {sorted(unknown)}; expected some of {RELATIONS}")
    rows = conn.execute(_WALK, {"start": document_id, "hops": hops, "relations": list(relations)}).fetchall()
    return [
        Neighbour(relation, bucket, key, hops, float(weight), via) for relation, bucket, key, hops, weight, via in rows
    ]
