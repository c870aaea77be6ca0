"""The document graph: `similar` and `references` edges, rebuilt inside the document's transaction.

Mentions are found before the transaction (`handlers.stages.mentions`); here they are only written
and resolved with SQL. Every function takes a psycopg connection inside the caller's transaction
(whose connection has the pgvector types registered) and never commits.

Ownership. An edge between two documents is written by the transaction of whichever document was
linked, in both directions, owned by that document. Replacing or deleting a document first removes
every edge that touches it, whoever owns it (`postgres._clear_content`), and linking then writes
the current ones; so both sides of a pair are updated when either side changes or goes away.

Concurrency. Two documents linked at the same moment hold only their own advisory locks. Their
edge inserts are idempotent on the edges' unique key and sorted by (source, target), so both may
write the same pair without an error and without waiting on each other in opposite orders. What
one transaction cannot see is the other's uncommitted document: an edge between two documents
committed at the same moment can be missing until either of them changes again.

References by bare file name are the exception to ownership by the linked document: they belong
to the mentioning document, because what a name resolves to changes when any document bearing it
comes or goes, and each such change resolves the name again for every document that mentions it
(under a lock on the name, so two bearers arriving at once see each other).

`similar` is a k-nearest-neighbour relation, which is not symmetric: B may be among A's nearest
while A is not among B's. The pair exists if either side found the other when it was linked; when
A changes, the pair comes back only if B is still among A's nearest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers.adapters.locks import lock_file_name
from handlers.adapters.rows import column

if TYPE_CHECKING:
    from collections.abc import Collection

    import psycopg

    from handlers.model import DocumentLinks, Mentions

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

# Links, URIs and keys resolve exactly: both directions at once, the document as source or target.
_REFERENCES_BY_URI = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight, attributes)
SELECT %(id)s, 'document', source_id, 'references', 'document', target_id, 1,
       jsonb_build_object('by', 'uri', 'mention', mention)
FROM (
    SELECT %(id)s::bigint AS source_id, document_id AS target_id, name AS mention FROM document_names
    WHERE kind = 'uri' AND name = ANY(%(uris)s::text[]) AND document_id <> %(id)s
    UNION
    SELECT document_id, %(id)s::bigint, mention FROM document_mentions
    WHERE kind = 'uri' AND mention = ANY(%(own_uris)s::text[]) AND document_id <> %(id)s
) AS pairs
ORDER BY source_id, target_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id)
    DO UPDATE SET weight = 1, attributes = EXCLUDED.attributes
"""

# A bare file name, for each (mentioning document, name) asked for: the one document in the
# mentioning document's folder that bears it, else the one document anywhere that bears it, else
# every bearer, marked ambiguous, each with weight 1 / the number of bearers. The mentioning
# document owns these edges: they outlive a bearer's transaction (which may delete the bearer).
_REFERENCES_BY_NAME = """
WITH wanted AS (
    SELECT mention.document_id AS source_id, mention.mention AS name, source.bucket,
           regexp_replace(source.key, '[^/]*$', '') AS folder
    FROM document_mentions AS mention JOIN documents AS source ON source.id = mention.document_id
    WHERE mention.kind = 'name' AND mention.document_id = ANY(%(sources)s::bigint[])
      AND mention.mention = ANY(%(names)s::text[])
),
candidates AS (
    SELECT wanted.source_id, wanted.name, bearer.document_id AS target_id,
           (target.bucket = wanted.bucket AND regexp_replace(target.key, '[^/]*$', '') = wanted.folder) AS local
    FROM wanted
    JOIN document_names AS bearer ON bearer.kind = 'name' AND bearer.name = wanted.name
         AND bearer.document_id <> wanted.source_id
    JOIN documents AS target ON target.id = bearer.document_id
),
counted AS (
    SELECT *, count(*) OVER mention AS bearers, count(*) FILTER (WHERE local) OVER mention AS local_bearers
    FROM candidates WINDOW mention AS (PARTITION BY source_id, name)
)
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight, attributes)
SELECT source_id, 'document', source_id, 'references', 'document', target_id,
       CASE WHEN local_bearers = 1 THEN 1 ELSE 1.0 / bearers END,
       jsonb_build_object('by', 'name', 'mention', name)
       || CASE WHEN local_bearers <> 1 AND bearers > 1
               THEN jsonb_build_object('ambiguous', true, 'candidates', bearers) ELSE '{}'::jsonb END
FROM counted
WHERE local_bearers <> 1 OR local
ORDER BY source_id, target_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id) DO UPDATE
    SET weight = EXCLUDED.weight, attributes = EXCLUDED.attributes WHERE edges.weight < EXCLUDED.weight
"""

# The walk steps over document-level edges in both directions of `references`. NOT MATERIALIZED
# lets the planner push `source_id = <current document>` into each arm and use the edge indexes.
# Each document reached is kept once: at its fewest hops, by its heaviest path.
_WALK = """
WITH RECURSIVE steps AS NOT MATERIALIZED (
    SELECT source_id, target_id, relation, weight, attributes FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation IN ('similar', 'references')
    UNION ALL
    SELECT target_id, source_id, 'referenced_by', weight, attributes FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation = 'references'
),
walk AS (
    SELECT target_id AS document_id, ARRAY[relation] AS relations, weight::float8 AS weight, 1 AS hops,
           ARRAY[source_id, target_id] AS path, attributes
    FROM steps WHERE source_id = %(start)s AND relation = ANY(%(relations)s::text[])
    UNION ALL
    SELECT step.target_id, walk.relations || step.relation, walk.weight * step.weight, walk.hops + 1,
           walk.path || step.target_id, step.attributes
    FROM walk JOIN steps AS step ON step.source_id = walk.document_id
    WHERE walk.hops < %(hops)s AND step.relation = ANY(%(relations)s::text[]) AND step.target_id <> ALL(walk.path)
),
reached AS (
    SELECT DISTINCT ON (walk.document_id) walk.*
    FROM walk ORDER BY walk.document_id, walk.hops, walk.weight DESC, walk.relations
)
SELECT document.bucket, document.key, document.status, reached.hops, reached.weight, reached.relations,
       ARRAY(SELECT step.key FROM unnest(reached.path[2:array_length(reached.path, 1) - 1]) WITH ORDINALITY
             AS via(id, position) JOIN documents AS step ON step.id = via.id ORDER BY via.position) AS via,
       coalesce((reached.attributes ->> 'ambiguous')::boolean, false) AS ambiguous
FROM reached JOIN documents AS document ON document.id = reached.document_id
ORDER BY reached.hops, reached.weight DESC, document.key
"""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A document reached from the start, once, with the path of relations that reaches it.

    `weight` is the product of the weights along the path. Per relation: `similar` is the cosine
    similarity of the two documents' vectors; `references`/`referenced_by` is how sure the mention
    is: 1 for a link, URI, key or a file name only one document bears (or only one in the mentioning
    document's folder), 1/n for a file name n documents bear (`ambiguous`). `via` are the documents
    passed through, in order.
    """

    bucket: str
    key: str
    status: str
    hops: int
    weight: float
    relations: tuple[str, ...]
    via: tuple[str, ...]
    ambiguous: bool


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A stored document as found by `find_document`."""

    id: int
    bucket: str
    key: str
    status: str
    error_code: str | None
    error: str | None


def link_document(
    conn: psycopg.Connection[Any], document_id: int, *, links: DocumentLinks, top_k: int, threshold: float
) -> None:
    """Set the document vector and write the document's `similar` and `references` edges.

    Expects the document's chunks written and its previous edges, names and mentions removed.
    `links` were found before the transaction began: here they are only written and resolved.
    """
    update_document_vectors(conn, [document_id])
    link_similar(conn, document_id, top_k=top_k, threshold=threshold)
    link_references(conn, document_id, names=links.names, mentions=links.mentions)


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


def link_references(conn: psycopg.Connection[Any], document_id: int, *, names: Mentions, mentions: Mentions) -> None:
    """Link the document to the documents it mentions and from the documents that mention it.

    Its names and mentions are kept, so a document that arrives later is linked in its own turn.
    A new bearer of a file name changes what that name resolves to for every document that
    mentions it, so those mentions are resolved again; a lock on the name serialises two
    documents of the same name arriving at once, so each sees the other.
    """
    own_names = sorted(names.names)
    for name in own_names:
        lock_file_name(conn, name)
    rows = [("uri", name) for name in sorted(names.uris)] + [("name", name) for name in own_names]
    conn.execute(
        "INSERT INTO document_names (document_id, kind, name) SELECT %s, kind, name"
        " FROM unnest(%s::text[], %s::text[]) AS given(kind, name) ON CONFLICT DO NOTHING",
        (document_id, [kind for kind, _ in rows], [name for _, name in rows]),
    )
    mentioned = [("uri", uri) for uri in sorted(mentions.uris)] + [("name", name) for name in sorted(mentions.names)]
    conn.execute(
        "INSERT INTO document_mentions (document_id, kind, mention) SELECT %s, kind, mention"
        " FROM unnest(%s::text[], %s::text[]) AS given(kind, mention) ON CONFLICT DO NOTHING",
        (document_id, [kind for kind, _ in mentioned], [mention for _, mention in mentioned]),
    )
    conn.execute(_REFERENCES_BY_URI, {"id": document_id, "uris": sorted(mentions.uris), "own_uris": sorted(names.uris)})
    conn.execute(_REFERENCES_BY_NAME, {"sources": [document_id], "names": sorted(mentions.names)})
    resolve_name_mentions_again(conn, own_names)


def resolve_name_mentions_again(conn: psycopg.Connection[Any], names: Collection[str]) -> None:
    """Resolve again every mention of these file names (after a document bearing one came or went)."""
    if not names:
        return
    mentioners = column(
        conn,
        "SELECT DISTINCT document_id FROM document_mentions WHERE kind = 'name' AND mention = ANY(%s::text[])",
        (list(names),),
    )
    if not mentioners:
        return
    conn.execute(
        "DELETE FROM edges WHERE relation = 'references' AND source_kind = 'document'"
        " AND source_id = ANY(%s::bigint[]) AND attributes ->> 'by' = 'name' AND attributes ->> 'mention' = ANY(%s)",
        (mentioners, list(names)),
    )
    conn.execute(_REFERENCES_BY_NAME, {"sources": mentioners, "names": list(names)})


def file_names_of(conn: psycopg.Connection[Any], document_id: int) -> list[str]:
    """The file names the document goes by (read before its names are removed)."""
    return column(conn, "SELECT name FROM document_names WHERE document_id = %s AND kind = 'name'", (document_id,))


def find_document(conn: psycopg.Connection[Any], given: str, bucket: str | None = None) -> DocumentRef:
    """The document `given` names: a key, an `s3://bucket/key` URI, or a file name only one key ends with.

    Raises LookupError with a message that suggests full keys when there is none or several.
    """
    from psycopg.rows import class_row

    if given.startswith("s3://"):
        bucket, _, given = given[len("s3://") :].partition("/")
    with conn.cursor(row_factory=class_row(DocumentRef)) as cursor:
        rows = cursor.execute(
            "SELECT id, bucket, key, status, error_code, error FROM documents"
            " WHERE key = %(given)s AND (%(bucket)s::text IS NULL OR bucket = %(bucket)s) ORDER BY bucket, key",
            {"given": given, "bucket": bucket},
        ).fetchall()
        if not rows and "/" not in given:
            rows = cursor.execute(
                "SELECT id, bucket, key, status, error_code, error FROM documents"
                " WHERE right(key, %(length)s) = %(suffix)s AND (%(bucket)s::text IS NULL OR bucket = %(bucket)s)"
                " ORDER BY bucket, key LIMIT 20",
                {"suffix": "/" + given, "length": len(given) + 1, "bucket": bucket},
            ).fetchall()
    if len(rows) == 1:
        return rows[0]
    where = f" in bucket {bucket!r}" if bucket else ""
    if rows:
        choices = ", ".join(f"s3://{row.bucket}/{row.key}" for row in rows)
        raise LookupError(f"{given!r} names several documents{where}: {choices}; give one of them in full")
    suggestions = _similar_keys(conn, given)
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    raise LookupError(f"no document is stored under {given!r}{where}{hint}")


def _similar_keys(conn: psycopg.Connection[Any], given: str, *, limit: int = 5) -> list[str]:
    import difflib

    base = given.rpartition("/")[2].casefold()
    stem = base.rpartition(".")[0] or base
    keys = column(
        conn, "SELECT key FROM documents WHERE strpos(lower(key), %s) > 0 ORDER BY key LIMIT 200", (stem[:64],)
    )
    if keys:
        return keys[:limit]
    recent = column(conn, "SELECT key FROM documents ORDER BY updated_at DESC LIMIT 2000")
    return difflib.get_close_matches(given, recent, n=limit, cutoff=0.6)


def neighbours(
    conn: psycopg.Connection[Any], document_id: int, *, hops: int = 1, relations: Collection[str] = RELATIONS
) -> list[Neighbour]:
    """Documents reachable from `document_id` in at most `hops` steps over the given relations, each once."""
    if not 1 <= hops <= MAX_HOPS:
        raise ValueError(f"hops must be in 1..{MAX_HOPS}, got {hops}")
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise ValueError(f"unknown relations {sorted(unknown)}; expected some of {RELATIONS}")
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(_WALK, {"start": document_id, "hops": hops, "relations": list(relations)}).fetchall()
    return [
        Neighbour(
            bucket=row["bucket"],
            key=row["key"],
            status=row["status"],
            hops=row["hops"],
            weight=float(row["weight"]),
            relations=tuple(row["relations"]),
            via=tuple(row["via"]),
            ambiguous=bool(row["ambiguous"]),
        )
        for row in rows
    ]
