"""Reads of the document graph: find a document by key, URI or file name, and walk its edges.

`references` edges are written inside each document's transaction (`handlers.adapters.graph`);
`similar` edges by the linking pass (`handlers.ops.similar`), which `link` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers.adapters.rows import column

if TYPE_CHECKING:
    from collections.abc import Collection

    import psycopg

    from handlers.ops.similar import LinkReport
    from handlers.settings import Settings

# What each relation's weight means, for a legend under a listing of neighbours.
WEIGHT_LEGEND = (
    "weight: similar = neighbour's BM25 score for the document's text / the document's own score (0-1],"
    " taken from the side that chose the pair, the document's own choices listed first;"
    " references = 1, or 1/n for a file name n documents bear; a path multiplies its weights"
)

# Walk relations: `referenced_by` is a `references` edge followed backwards.
RELATIONS = ("similar", "references", "referenced_by")
# The walk enumerates paths (a recursive CTE cannot see which documents other paths reached), so
# its cost grows as degree ** hops; a few hops are what a reader of the graph needs anyway.
MAX_HOPS = 4

# The walk steps over document-level edges in both directions of `references`. NOT MATERIALIZED
# lets the planner push `source_id = <current document>` into each arm and use the edge indexes.
# Each document reached is kept once: at its fewest hops, by its heaviest path. One hop away, the
# `similar` neighbours that chose the start (mirrored edges, weighed by the other side) come after
# the rest.
_WALK = """
WITH RECURSIVE steps AS NOT MATERIALIZED (
    SELECT source_id, target_id, relation, weight, attributes,
           relation = 'similar' AND owner_document_id <> source_id AS mirrored
    FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation IN ('similar', 'references')
    UNION ALL
    SELECT target_id, source_id, 'referenced_by', weight, attributes, false FROM edges
    WHERE source_kind = 'document' AND target_kind = 'document' AND relation = 'references'
),
walk AS (
    SELECT target_id AS document_id, ARRAY[relation] AS relations, weight::float8 AS weight, 1 AS hops,
           ARRAY[source_id, target_id] AS path, attributes, mirrored
    FROM steps WHERE source_id = %(start)s AND relation = ANY(%(relations)s::text[])
    UNION ALL
    SELECT step.target_id, walk.relations || step.relation, walk.weight * step.weight, walk.hops + 1,
           walk.path || step.target_id, step.attributes, false
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
ORDER BY reached.hops, reached.mirrored, reached.weight DESC, document.key
"""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A document reached from the start, once, with the path of relations that reaches it.

    `weight` is the product of the weights along the path. Per relation: `similar` is the BM25
    score of the neighbour for the document's text over the document's score for its own text;
    `references`/`referenced_by` is how sure the mention
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


def link(conn: psycopg.Connection[Any], settings: Settings) -> LinkReport:
    """Run the `similar` linking pass now with the settings' options (compaction runs it too); autocommit `conn`."""
    from handlers.ops.similar import link_pending, similar_options

    return link_pending(conn, similar_options(settings))
