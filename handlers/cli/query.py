"""Commands that read the store and the queue: search, graph, status, failed, console."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from handlers.cli.common import (
    AWS,
    DATABASE,
    EMBEDDER,
    QUEUE,
    add_command,
    plural,
    port_number,
    positive_int,
    print_json,
    stderr_line,
    table,
)
from handlers.errors import ConfigError, ErrorCode
from handlers.settings import get_settings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from handlers.cli.common import Subcommands
    from handlers.ops.search import SearchHit, SearchMode
    from handlers.ops.status import QueueStatus, StoreReport


def register_search(commands: Subcommands) -> None:
    search = add_command(
        commands,
        "search",
        "the chunks that best match a text, with key, page and snippet",
        reads=(*DATABASE, *EMBEDDER),
        example="filequeue search 'trace-based compilation' --hybrid --limit 3",
        handler=run_search,
    )
    search.add_argument("text", help="what to look for")
    search.add_argument("--limit", type=positive_int, default=10, help="how many chunks (default 10)")
    search.add_argument(
        "--hybrid", action="store_true", help="fuse vector similarity with BM25 (short for --mode hybrid)"
    )
    search.add_argument(
        "--mode",
        choices=("vector", "hybrid", "text"),
        default=None,
        help="vector (cosine similarity, the default), hybrid (vector and BM25 fused) or text (BM25 alone)",
    )
    search.add_argument(
        "--explain",
        action="store_true",
        help="show each hit's similarity, BM25 score, ranks and the fused score's parts",
    )
    search.add_argument("--prefix", default="", help="only documents whose key starts with this")
    search.add_argument("--content-type", default=None, help="only documents of this type, e.g. text/markdown")
    search.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="drop hits scoring below this: a cosine similarity in vector mode, a fused score in 0..1 otherwise"
        " (1 = the best candidate on both sides)",
    )


def run_search(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue

    if args.hybrid and args.mode not in (None, "hybrid"):
        stderr_line(f"error: --hybrid contradicts --mode {args.mode}")
        return 2
    mode: SearchMode = "hybrid" if args.hybrid else "vector"
    if args.mode is not None:
        mode = args.mode
    with FileQueue(get_settings()) as store:
        failed = store.failed_count()
        formula = store.score_formula(mode=mode)
        nothing = store.no_match_message(mode=mode)
        hits = store.search(
            args.text,
            mode=mode,
            limit=args.limit,
            prefix=args.prefix,
            content_type=args.content_type,
            min_score=args.min_score,
        )
    if failed:
        verb = "is" if failed == 1 else "are"
        stderr_line(
            f"note: {plural(failed, 'document')} failed and {verb} not searchable; `filequeue failed` lists them"
        )
    if args.json:
        print_json([dataclasses.asdict(hit) | {"origin": hit.origin} for hit in hits])
        return 0
    if not hits:
        print(nothing if args.min_score is None else f"no results scoring at least {args.min_score:g}")
        return 0
    if args.explain:
        print(_explained(hits, formula, fused=mode != "vector"))
        return 0
    rows = [["rank", "score", "page", "key", "snippet"]] + [
        [str(rank), f"{hit.score:.4f}", str(hit.page), hit.key, hit.snippet] for rank, hit in enumerate(hits, 1)
    ]
    print(table(_with_origin(rows, hits), right_aligned=3))
    return 0


def _with_origin(rows: list[list[str]], hits: Sequence[SearchHit]) -> list[list[str]]:
    """`rows` with a `from` column after `page` (`text`, or `ocr` with its confidence) when a hit came from OCR.

    Without OCR hits the table is unchanged.
    """
    if all(hit.ocr_confidence is None for hit in hits):
        return rows
    column = rows[0].index("page") + 1
    cells = ["from"] + [_origin(hit) for hit in hits]
    return [[*row[:column], cell, *row[column:]] for row, cell in zip(rows, cells, strict=True)]


def _origin(hit: SearchHit) -> str:
    return "text" if hit.ocr_confidence is None else f"ocr {hit.ocr_confidence:.0f}%"


def _explained(hits: Sequence[SearchHit], formula: str, *, fused: bool) -> str:
    """The hits with the parts of their score: raw similarity and BM25, ranks among candidates, fused parts."""
    if not fused:
        rows = [["rank", "cosine", "page", "key"]] + [
            [str(rank), f"{hit.score:.4f}", str(hit.page), hit.key] for rank, hit in enumerate(hits, 1)
        ]
        return formula + "\n" + table(_with_origin(rows, hits), right_aligned=3)
    header = formula + "; '-' = not a candidate"
    rows = [["rank", "cosine", "BM25", "vector", "text", "vector part", "text part", "score", "page", "key"]]
    for rank, hit in enumerate(hits, 1):
        rows.append(
            [
                str(rank),
                "-" if hit.similarity is None else f"{hit.similarity:.4f}",
                "-" if hit.bm25 is None else f"{hit.bm25:.3f}",
                str(hit.vector_rank or "-"),
                str(hit.text_rank or "-"),
                f"{hit.vector_part or 0.0:.4f}",
                f"{hit.text_part or 0.0:.4f}",
                f"{hit.score:.4f}",
                str(hit.page),
                hit.key,
            ]
        )
    return header + "\n" + table(_with_origin(rows, hits), right_aligned=9)


def register_console(commands: Subcommands) -> None:
    console = add_command(
        commands,
        "console",
        "a read-only web page on loopback: search, documents with their graph, failures, queue and DLQ",
        reads=(*DATABASE, *EMBEDDER, *QUEUE, "FILEQUEUE_CONSOLE_TOKEN (required to bind other than loopback)"),
        example="filequeue console --port 8765    # then open http://127.0.0.1:8765/",
        handler=run_console,
    )
    console.add_argument("--host", default="127.0.0.1", help="address to bind (other than loopback needs a token)")
    console.add_argument("--port", type=port_number, default=8765, help="TCP port, 0 for any free one (default 8765)")


def run_console(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue
    from handlers.console.server import check_bind_address, serve

    settings = get_settings()
    check_bind_address(args.host, settings.console_token)
    with FileQueue(settings) as store:
        serve(store, host=args.host, port=args.port, token=settings.console_token)
    return 0


def register_graph(commands: Subcommands) -> None:
    from handlers.ops.graph import MAX_HOPS, RELATIONS

    graph = add_command(
        commands,
        "graph",
        "a document's neighbours in the graph, by relation",
        reads=DATABASE,
        example="filequeue graph uploads/tracemonkey.pdf --hops 2",
        handler=run_graph,
    )
    graph.add_argument("key", nargs="?", help="the document's key, s3:// URI, or a file name only one key ends with")
    graph.add_argument(
        "--link",
        action="store_true",
        help="first compute the `similar` neighbours of documents waiting for them (compaction also does)",
    )
    graph.add_argument("--bucket", default=None, help="the bucket, if several hold the key")
    graph.add_argument(
        "--hops",
        type=int,
        choices=range(1, MAX_HOPS + 1),
        default=1,
        metavar="N",
        help=f"how many edges to walk, 1-{MAX_HOPS} (default 1)",
    )
    graph.add_argument(
        "--relation",
        action="append",
        choices=RELATIONS,
        help="walk only this relation (repeatable; default all)",
    )


def run_graph(args: argparse.Namespace) -> int:
    from handlers.ops.db import session
    from handlers.ops.graph import RELATIONS, WEIGHT_LEGEND, find_document, link, neighbours

    if args.key is None and not args.link:
        raise ConfigError("give a document's key, or --link to compute pending `similar` neighbours")
    settings = get_settings()
    with session(settings) as conn:
        if args.link:
            report = link(conn, settings)
            if args.key is None:
                if args.json:
                    print_json(dataclasses.asdict(report))
                else:
                    print(
                        f"similar neighbours computed for {plural(report.documents, 'document')} in {report.seconds}s"
                    )
                return 0
        try:
            document = find_document(conn, args.key, args.bucket)
        except LookupError as error:
            raise ConfigError(str(error.args[0])) from None
        found = neighbours(conn, document.id, hops=args.hops, relations=args.relation or RELATIONS)
    failure = f"{document.error_code}: {document.error}" if document.status == "failed" else None
    if args.json:
        listed = [dataclasses.asdict(neighbour) for neighbour in found]
        print_json({"key": document.key, "status": document.status, "error": failure, "neighbours": listed})
        return 0
    print(f"s3://{document.bucket}/{document.key}  {document.status}" + (f" ({failure})" if failure else ""))
    if failure:
        print("  a failed document has no graph; `filequeue failed` lists every failure")
    elif not found:
        print("  no neighbours")
    for neighbour in found:
        path = " > ".join(
            f"{relation} {key}"
            for relation, key in zip(neighbour.relations, [*neighbour.via, neighbour.key], strict=True)
        )
        marks = " (ambiguous name)" if neighbour.ambiguous else ""
        marks += "" if neighbour.status == "ready" else f" [{neighbour.status}]"
        print(f"  {neighbour.weight:.3f}  {path}{marks}")
    if found:
        print(f"  ({WEIGHT_LEGEND})")
    return 0


def register_status(commands: Subcommands) -> None:
    add_command(
        commands,
        "status",
        "documents by status and error, chunks, edges, the embedding model, pending migrations, queue and DLQ"
        " depth; exits 1 when the DLQ holds messages or migrations are pending",
        reads=(*DATABASE, "FILEQUEUE_QUEUE_URL (optional: without it the queues are not shown)", *AWS),
        example="filequeue status && echo 'safe to deploy'",
        handler=run_status,
    )


def run_status(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.db import session
    from handlers.ops.status import healthy, queue_status, store_report

    settings = get_settings()
    # Pending migrations are part of the report (and make the exit code 1), not an error.
    with session(settings, allow_pending_migrations=True) as conn:
        store = store_report(conn)
    queue = None
    if settings.queue_url:
        queue = queue_status(aws.client("sqs"), aws.client("cloudwatch"), settings.queue_url)
    if args.json:
        print_json({"store": dataclasses.asdict(store), "queue": queue and dataclasses.asdict(queue)})
    else:
        _print_status(store, queue)
    return 0 if healthy(store, queue) else 1


def _print_status(store: StoreReport, queue: QueueStatus | None) -> None:
    documents = ", ".join(f"{status} {count}" for status, count in store.documents.items()) or "none"
    print(f"documents:   {documents}")
    for code, count in store.failures.items():
        print(f"  failed {code}: {count}")
    print(f"chunks:      {store.chunks}")
    print("edges:       " + (", ".join(f"{name} {count}" for name, count in store.edges.items()) or "none"))
    if store.embedding_model:
        print(f"embeddings:  {store.embedding_model} (dimension {store.embedding_dimension})")
    if store.reembed_target:
        print(f"reembed:     in progress toward {store.reembed_target}")
    migrations = ", ".join(store.pending_migrations) if store.pending_migrations else "none pending"
    print(f"migrations:  {migrations}")
    if queue is None:
        print("queue:       FILEQUEUE_QUEUE_URL is not set")
        return
    age = "unknown" if queue.oldest_message_age_seconds is None else f"{queue.oldest_message_age_seconds:.0f} s"
    print(f"queue:       {queue.visible} visible, {queue.in_flight} in flight, oldest message {age}")
    print(f"dlq:         {plural(queue.dead_letters, 'message')} ({queue.dead_letter_url})")


def register_failed(commands: Subcommands) -> None:
    failed = add_command(
        commands,
        "failed",
        "every document whose last event failed permanently: key, version, error code, reason, time",
        reads=DATABASE,
        example="filequeue failed --prefix uploads/reports/ --code encrypted_pdf --since 24h",
        handler=run_failed,
    )
    failed.add_argument("--prefix", default="", help="only keys starting with this")
    failed.add_argument(
        "--code",
        default=None,
        choices=[code.value for code in ErrorCode],
        metavar="CODE",
        help="only this error code, e.g. encrypted_pdf (see `filequeue status`)",
    )
    failed.add_argument("--since", default=None, help="only failures since an ISO 8601 time or a duration (30m, 7d)")


def run_failed(args: argparse.Namespace) -> int:
    from handlers.ops.db import session
    from handlers.ops.failed import failed_documents, failed_messages, parse_since

    since = parse_since(args.since) if args.since else None
    with session(get_settings()) as conn:
        failures = list(failed_documents(conn, prefix=args.prefix, code=args.code, since=since))
        # Kept by message id, they have no key for --prefix to match: listed only when no prefix is asked for.
        if not args.prefix:
            failures += failed_messages(conn, code=args.code, since=since)
    if args.json:
        print_json([dataclasses.asdict(failure) for failure in failures])
        return 0
    rows = [["failed at", "error code", "key", "version", "reason"]]
    rows += [
        [
            failure.failed_at[:19],
            str(failure.error_code),
            failure.key if failure.key is not None else f"(no row) message {failure.message_id}",
            failure.version_id or "-",
            str(failure.error),
        ]
        for failure in failures
    ]
    print(table(rows, right_aligned=0) if len(rows) > 1 else "no failed documents")
    return 0


REGISTRATIONS: list[Callable[[Subcommands], None]] = [
    register_search,
    register_graph,
    register_status,
    register_failed,
    register_console,
]
