"""The document graph: `references` edges written inside the document's transaction, `similar` in bulk.

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

`similar` is computed off the ingest path (`link_pending`, see its docstring and docs/graph.md):
the ingest transaction only queues the document, and the former neighbours of a replaced or deleted
one, in `similar_pending`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handlers.adapters.locks import lock_file_name
from handlers.adapters.rows import column

if TYPE_CHECKING:
    from collections.abc import Collection

    import psycopg

    from handlers.model import DocumentLinks, Mentions

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


def link_document(conn: psycopg.Connection[Any], document_id: int, *, links: DocumentLinks) -> None:
    """Set the document vector, write its `references` edges and queue it for its `similar` edges.

    Expects the document's chunks written and its previous edges, names and mentions removed.
    `links` were found before the transaction began: here they are only written and resolved.
    """
    update_document_vectors(conn, [document_id])
    queue_similar(conn, [document_id])
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


def queue_similar(conn: psycopg.Connection[Any], document_ids: Collection[int]) -> None:
    """Mark documents whose `similar` neighbours need computing (plain inserts: no writer waits on another)."""
    if document_ids:
        conn.execute(
            "INSERT INTO similar_pending (document_id) SELECT unnest(%s::bigint[])", (sorted(set(document_ids)),)
        )


def queue_former_neighbours(conn: psycopg.Connection[Any], document_id: int) -> None:
    """Queue the documents linked to this one by `similar` (before its edges go): their lists lose it."""
    conn.execute(
        "INSERT INTO similar_pending (document_id) SELECT DISTINCT target_id FROM edges"
        " WHERE source_kind = 'document' AND source_id = %s AND relation = 'similar' AND target_kind = 'document'",
        (document_id,),
    )


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
