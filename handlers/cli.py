"""`filequeue`: migrate, invoke the handler on a sample event, generate events, run the worker."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, FileQueueError, TransientError
from handlers.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import psycopg

    from handlers.adapters.search import SearchHit


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except FileQueueError as error:
        print(f"filequeue: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    from handlers.compact_cli import add_compact_command

    parser = argparse.ArgumentParser(prog="filequeue", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(command=_migrate)

    invoke = commands.add_parser("invoke", help="run the handler on a Lambda SQS event file, like sam local invoke")
    invoke.add_argument("--event", required=True, type=Path, help="JSON file with a Lambda SQS event")
    invoke.add_argument("--timeout", type=float, default=300.0, help="simulated function timeout in seconds")
    invoke.set_defaults(command=_invoke)

    events = commands.add_parser("events", help="write sample events, like sam local generate-event")
    kinds = events.add_subparsers(required=True, metavar="KIND")
    s3_put = kinds.add_parser("s3-put", help="an SQS event carrying an S3 ObjectCreated:Put notification")
    s3_delete = kinds.add_parser("s3-delete", help="an SQS event carrying an S3 ObjectRemoved:Delete notification")
    for kind, event_name in ((s3_put, "ObjectCreated:Put"), (s3_delete, "ObjectRemoved:Delete")):
        kind.add_argument("--bucket", required=True)
        kind.add_argument("--key", required=True, help="the object key, unencoded")
        kind.add_argument("--size", type=int, default=1024)
        kind.add_argument("--etag", default="0123456789abcdef0123456789abcdef")
        kind.add_argument("--version-id", default=None)
        kind.add_argument("--sequencer", default=None, help="hex S3 sequencer (default: from the clock)")
        kind.set_defaults(command=_generate_event, event_name=event_name)

    worker = commands.add_parser("worker", help="long-poll the queue and run the handler (the EKS runtime)")
    worker.add_argument("--processes", type=int, default=None, help="worker processes (default: CPU count)")
    worker.set_defaults(command=_worker)

    demo = commands.add_parser("demo", help="the whole pipeline on the embedded stack, with a summary")
    demo.add_argument("--processes", type=int, default=2, help="worker processes")
    demo.set_defaults(command=_demo)

    dev = commands.add_parser("dev", help="keep the embedded stack and a worker running; prints how to use it")
    dev.add_argument("--data-dir", type=Path, default=Path(".filequeue/dev"), help="where PostgreSQL keeps its data")
    dev.add_argument("--processes", type=int, default=1, help="worker processes")
    dev.set_defaults(command=_dev)

    search = commands.add_parser("search", help="the chunks that best match a text, with key, page and snippet")
    search.add_argument("text", help="what to look for")
    search.add_argument("--limit", type=_positive_int, default=10, help="how many chunks (default 10)")
    search.add_argument(
        "--hybrid", action="store_true", help="fuse vector similarity with full-text ranking (reciprocal rank fusion)"
    )
    search.add_argument("--json", action="store_true", help="print a JSON list")
    _add_search_options(search)
    search.set_defaults(command=_search)
    _add_console_command(commands)

    _add_graph_command(commands)

    reembed = commands.add_parser(
        "reembed", help="move the store to the embedding model and dimension in the settings, search answering"
    )
    reembed.add_argument("--batch-size", type=_positive_int, default=256, help="chunks per transaction (default 256)")
    reembed.add_argument(
        "--max-batches", type=_positive_int, default=None, help="stop after this many batches; run again to resume"
    )
    reembed.add_argument(
        "--no-switch", action="store_true", help="build the new vectors and their indexes, but do not switch yet"
    )
    reembed.set_defaults(command=_reembed)
    add_compact_command(commands)
    return parser


def _add_graph_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from handlers.adapters.graph import MAX_HOPS

    graph = commands.add_parser("graph", help="a document's neighbours in the graph, by relation")
    graph.add_argument("key", help="the document's key, s3:// URI, or a file name only one key ends with")
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
        choices=("similar", "references", "referenced_by"),
        help="walk only this relation (repeatable; default all)",
    )
    graph.add_argument("--json", action="store_true", help="print JSON")
    graph.set_defaults(command=_graph)


def _add_search_options(search: argparse.ArgumentParser) -> None:
    search.add_argument("--explain", action="store_true", help="show each hit's vector rank, text rank and fused score")
    search.add_argument("--prefix", default="", help="only documents whose key starts with this")
    search.add_argument("--content-type", default=None, help="only documents of this type, e.g. text/markdown")
    search.add_argument("--min-score", type=float, default=None, help="drop hits scoring below this")


def _add_console_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = commands.add_parser("console", help="a read-only web page: search, documents, graph, failures, queue")
    console.add_argument("--host", default="127.0.0.1", help="address to bind (other than loopback needs a token)")
    console.add_argument("--port", type=int, default=8765)
    console.set_defaults(command=_console)


def _migrate(_args: argparse.Namespace) -> int:
    from handlers.adapters.embedders import build_embedder
    from handlers.batch import prepare_database

    settings = get_settings()
    settings.require_database()
    embedder = build_embedder(settings)
    _, applied = prepare_database(settings, embedder.model, embedder.dimension, apply=True)
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from handlers.batch import handle_batch
    from handlers.runtime_context import DeadlineContext

    try:
        event: dict[str, Any] = json.loads(args.event.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"filequeue: error: cannot read event {args.event}: {error}", file=sys.stderr)
        return 2
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        print(f"filequeue: error: {args.event} is not a Lambda SQS event (no Records list)", file=sys.stderr)
        return 2
    response = handle_batch(event, DeadlineContext.lasting(args.timeout))
    print(json.dumps(response))
    return 0


def _generate_event(args: argparse.Namespace) -> int:
    import time

    from handlers.sample_events import message_body, s3_notification, sqs_event

    sequencer = args.sequencer or format(time.time_ns(), "X")
    notification = s3_notification(
        args.bucket,
        args.key,
        event_name=args.event_name,
        size=args.size,
        etag=args.etag,
        version_id=args.version_id,
        sequencer=sequencer,
    )
    print(json.dumps(sqs_event([message_body(notification)]), indent=2))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from handlers.worker import run_worker

    return run_worker(get_settings(), processes=args.processes)


def _demo(args: argparse.Namespace) -> int:
    from handlers.demo import run_demo

    report = run_demo(args.processes)
    return 0 if report.queue_left == 0 and report.dead_letters == 0 else 1


def _dev(args: argparse.Namespace) -> int:
    from handlers.demo import run_dev

    return run_dev(args.data_dir, args.processes, get_settings().health_port)


def _search(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue

    with FileQueue.from_env() as store:
        hits = store.search(
            args.text,
            hybrid=args.hybrid,
            limit=args.limit,
            prefix=args.prefix,
            content_type=args.content_type,
            min_score=args.min_score,
        )
    if args.json:
        print(json.dumps([dataclasses.asdict(hit) for hit in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no results")
        return 0
    if args.explain:
        print(_explained(hits, hybrid=args.hybrid))
        return 0
    rows = [["rank", "score", "page", "key", "snippet"]] + [
        [str(rank), f"{hit.score:.4f}", str(hit.page), hit.key, hit.snippet] for rank, hit in enumerate(hits, 1)
    ]
    print(_table(rows, right_aligned=3))
    return 0


def _explained(hits: Sequence[SearchHit], *, hybrid: bool) -> str:
    """The hits with the parts of their score: ranks in each ranking and their reciprocal-rank terms."""
    from handlers.adapters.search import RRF_K, TEXT_WEIGHT, VECTOR_WEIGHT

    if not hybrid:
        header = "score = cosine similarity of the query and chunk vectors"
        rows = [["rank", "cosine", "page", "key"]] + [
            [str(rank), f"{hit.score:.4f}", str(hit.page), hit.key] for rank, hit in enumerate(hits, 1)
        ]
        return header + "\n" + _table(rows, right_aligned=3)
    header = (
        f"score = {VECTOR_WEIGHT:g}/({RRF_K} + vector rank) + {TEXT_WEIGHT:g}/({RRF_K} + text rank);"
        " '-' = not a candidate"
    )
    rows = [["rank", "vector", "text", "vector part", "text part", "score", "page", "key"]]
    for rank, hit in enumerate(hits, 1):
        vector_part = VECTOR_WEIGHT / (RRF_K + hit.vector_rank) if hit.vector_rank else 0.0
        text_part = TEXT_WEIGHT / (RRF_K + hit.text_rank) if hit.text_rank else 0.0
        rows.append(
            [
                str(rank),
                str(hit.vector_rank or "-"),
                str(hit.text_rank or "-"),
                f"{vector_part:.4f}",
                f"{text_part:.4f}",
                f"{hit.score:.4f}",
                str(hit.page),
                hit.key,
            ]
        )
    return header + "\n" + _table(rows, right_aligned=7)


def _console(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue
    from handlers.console.server import check_bind_address, serve

    token = get_settings().console_token
    check_bind_address(args.host, token)
    with FileQueue.from_env() as store:
        serve(store, host=args.host, port=args.port, token=token)
    return 0


def _graph(args: argparse.Namespace) -> int:
    from handlers.adapters.graph import RELATIONS, find_document, neighbours

    with _connect(_database_url()) as conn:
        try:
            document = find_document(conn, args.key, args.bucket)
        except LookupError as error:
            print(f"filequeue: error: {error.args[0]}", file=sys.stderr)
            return 2
        found = neighbours(conn, document.id, hops=args.hops, relations=args.relation or RELATIONS)
    failure = f"{document.error_code}: {document.error}" if document.status == "failed" else None
    if args.json:
        listed = [dataclasses.asdict(neighbour) for neighbour in found]
        print(
            json.dumps(
                {"key": document.key, "status": document.status, "error": failure, "neighbours": listed},
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    print(f"s3://{document.bucket}/{document.key}  {document.status}" + (f" ({failure})" if failure else ""))
    if not found:
        print("  no neighbours")
    for neighbour in found:
        path = " > ".join(
            f"{relation} {key}"
            for relation, key in zip(neighbour.relations, [*neighbour.via, neighbour.key], strict=True)
        )
        marks = " (ambiguous name)" if neighbour.ambiguous else ""
        marks += "" if neighbour.status == "ready" else f" [{neighbour.status}]"
        print(f"  {neighbour.weight:.3f}  {path}{marks}")
    return 0


def _reembed(args: argparse.Namespace) -> int:
    from handlers.adapters.embedders import build_embedder
    from handlers.adapters.migrate import pending_migrations
    from handlers.adapters.reembed import ReembedOptions, reembed

    settings = get_settings()
    embedder = build_embedder(settings)
    options = ReembedOptions(
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        switch=not args.no_switch,
        similar_top_k=settings.similar_top_k,
        similar_threshold=settings.similar_threshold,
    )
    with _connect(_database_url()) as conn:
        if pending := pending_migrations(conn):
            raise ConfigError(f"database schema is behind ({', '.join(pending)}); run `filequeue migrate` first")
        report = reembed(conn, embedder, options, on_batch=lambda batch: print(f"batch {batch} written"))
    target = f"{report.target.embedding_model!r} (dimension {report.target.embedding_dimension})"
    print(f"embedded {report.chunks_embedded} chunks in {report.batches} batches toward {target}")
    if report.complete:
        print(f"switched to {target}; similar edges recomputed for {report.documents_relinked} documents")
    else:
        print("not switched yet; run `filequeue reembed` again to continue")
    return 0


def _database_url() -> str:
    from handlers.adapters.postgres import resolve_database_url
    from handlers.adapters.secrets import fetch_secret

    settings = get_settings()
    return resolve_database_url(settings.database_url, settings.database_secret_arn, fetch_secret)


@contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection that knows the vector type; unreachable databases are FileQueueErrors."""
    import psycopg
    from pgvector.psycopg import register_vector

    timeout = max(1, int(get_settings().db_connect_timeout_seconds))
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout, application_name="filequeue-cli")
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {exc}", code="db_unavailable") from exc
    with conn:
        register_vector(conn)
        yield conn


def _table(rows: list[list[str]], *, right_aligned: int) -> str:
    """Rows as aligned columns; the first `right_aligned` columns are numbers, the last is not padded."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column < right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


if __name__ == "__main__":
    raise SystemExit(main())
