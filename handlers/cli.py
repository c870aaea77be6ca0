"""`filequeue`: run, inspect and operate File Queue from a shell.

Every command reads its configuration from FILEQUEUE_* and the standard AWS variables, prints a
table for people or JSON with --json, and turns a bad input into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, FileQueueError
from handlers.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    from handlers.adapters.search import SearchHit
    from handlers.ops.dlq import RecordedFailure
    from handlers.settings import Settings

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_USAGE = 2
DATABASE = ("FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN)", "FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS")
EMBEDDER = ("FILEQUEUE_EMBEDDER", "FILEQUEUE_EMBEDDING_MODEL", "FILEQUEUE_EMBEDDING_DIMENSION")
AWS = ("AWS_REGION", "AWS_ENDPOINT_URL (moto, LocalStack)", "AWS credentials")
QUEUE = ("FILEQUEUE_QUEUE_URL",)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except FileQueueError as error:
        return _fail(str(error))
    except BrokenPipeError:
        # The reader went away (`filequeue search ... | head`): stop writing, and keep Python from
        # reporting the broken pipe again while it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _fail("output closed early (broken pipe); nothing else went wrong")
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - library errors become one line, never a traceback
        return _fail(_describe_library_error(error))


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="filequeue", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"filequeue {version('filequeue')}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for register in REGISTRATIONS:
        register(commands)
    return parser


def add_command(
    commands: Subcommands,
    name: str,
    summary: str,
    *,
    reads: Sequence[str],
    example: str,
    handler: Callable[[argparse.Namespace], int] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose --help gives what it does, the settings it reads and an example."""
    epilog = "settings read:\n" + "".join(f"  {setting}\n" for setting in reads or ("none",))
    epilog += "\nexample:\n" + "".join(f"  {line}\n" for line in example.splitlines())
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary, epilog=epilog, formatter_class=_Formatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of text")
    if handler is not None:
        parser.set_defaults(command=handler)
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


# --- migrate -----------------------------------------------------------------------------------


def register_migrate(commands: Subcommands) -> None:
    add_command(
        commands,
        "migrate",
        "apply pending database migrations (safe while other processes start)",
        reads=(*DATABASE, *EMBEDDER),
        example="filequeue migrate",
        handler=run_migrate,
    )


def run_migrate(args: argparse.Namespace) -> int:
    from handlers.adapters.embedders import build_embedder
    from handlers.ops.db import database_url
    from handlers.wiring import prepare_database

    settings = get_settings()
    settings.require_database()
    database_url(settings)
    embedder = build_embedder(settings)
    _, applied = prepare_database(settings, embedder.model, embedder.dimension, apply=True)
    if args.json:
        _print_json({"applied": applied})
    else:
        print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


# --- invoke ------------------------------------------------------------------------------------


def register_compact(commands: Subcommands) -> None:
    compact = add_command(
        commands,
        "compact",
        "move new chunks into indexed segments and merge segments (safe to run any time)",
        reads=(*DATABASE, "FILEQUEUE_VECTOR_INDEX", "FILEQUEUE_COMPACTION_SEAL_ROWS"),
        example="filequeue compact            # what the worker's leader and the scheduled function do\n"
        "filequeue compact --merge-all # one segment: the fastest search",
        handler=run_compact,
    )
    compact.add_argument(
        "--seal", action="store_true", help="seal the growing area even below FILEQUEUE_COMPACTION_SEAL_ROWS"
    )
    compact.add_argument(
        "--merge-all", action="store_true", help="seal, then merge every segment into one (fastest search)"
    )
    compact.add_argument(
        "--merge-factor", type=_at_least_two, default=4, help="segments of one size tier merged together (default 4)"
    )


def run_compact(args: argparse.Namespace) -> int:
    from handlers.compaction import compact_options, report_as_dict, run_compaction
    from handlers.ops.db import require_schema

    settings = get_settings()
    with _database(settings) as conn:
        require_schema(conn)
    options = compact_options(settings, force_seal=args.seal, merge_all=args.merge_all, merge_factor=args.merge_factor)
    report = run_compaction(settings, options)
    if args.json:
        _print_json(report_as_dict(report))
        return 0
    if report.skipped:
        print(f"nothing done: {report.skipped}")
        return 0
    print(f"sealed {report.sealed_rows} chunks; {report.merges} merges of {report.merged_rows} chunks")
    if report.layout is not None:
        layout = report.layout
        print(f"growing (searched exactly): {layout.growing_rows} chunks")
        print(f"live (HNSW updated per row): {layout.live_rows} chunks")
        for segment in layout.segments:
            print(f"segment {segment.number} (HNSW built once): {segment.rows} chunks")
    return 0


def _at_least_two(value: str) -> int:
    number = _whole_number(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {number}")
    return number


def register_invoke(commands: Subcommands) -> None:
    invoke = add_command(
        commands,
        "invoke",
        "run the handler once on a Lambda SQS event, like `sam local invoke`; the batch response goes to stdout",
        reads=(*DATABASE, *EMBEDDER, "AWS_REGION", "AWS_ENDPOINT_URL", "FILEQUEUE_DEADLINE_MARGIN_SECONDS"),
        example="filequeue events s3-put --bucket filequeue-demo --key uploads/notes.md > put.json\n"
        "filequeue invoke --event put.json | jq .",
        handler=run_invoke,
    )
    invoke.add_argument(
        "--event",
        required=True,
        help="JSON file with a Lambda SQS event, or a bare S3 notification (wrapped for you); - reads stdin",
    )
    invoke.add_argument("--timeout", type=float, default=300.0, help="simulated function timeout in seconds")
    invoke.add_argument(
        "--fail-on-item-failures", action="store_true", help="exit with code 1 when a record is reported as failed"
    )


def run_invoke(args: argparse.Namespace) -> int:
    from handlers.batch import handle_batch, logger
    from handlers.ops.db import database_url
    from handlers.runtime_context import DeadlineContext
    from handlers.wiring import get_deps

    event = _sqs_event(_read_event(args.event), args.event)
    if not event["Records"]:
        print("filequeue: note: the event has no records; nothing to do", file=sys.stderr)
        response: dict[str, Any] = {"batchItemFailures": []}
    else:
        # Logs go to stderr so that stdout holds only the response (`| jq` works).
        log_handler: Any = logger.registered_handler
        previous_stream = log_handler.setStream(sys.stderr)
        try:
            # Built before the batch: a configuration error stops here instead of becoming a retried record.
            settings = get_settings()
            settings.require_database()
            database_url(settings)
            get_deps()
            response = dict(handle_batch(event, DeadlineContext.lasting(args.timeout)))
        finally:
            log_handler.setStream(previous_stream)
    print(json.dumps(response))
    return 1 if args.fail_on_item_failures and response.get("batchItemFailures") else 0


def _read_event(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read event {source}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ConfigError(f"event {source} is not JSON: {error}") from None


def _sqs_event(event: Any, source: str) -> dict[str, Any]:
    """The event as Lambda's SQS mapping would pass it; a bare S3 notification is wrapped in one record."""
    from handlers.sample_events import message_body, sqs_event

    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ConfigError(f"{source} is not a Lambda SQS event or an S3 notification (no Records list)")
    if records and all(isinstance(record, dict) and record.get("eventSource") == "aws:s3" for record in records):
        print(f"filequeue: note: {source} is an S3 notification; wrapped into an SQS event", file=sys.stderr)
        return sqs_event([message_body(event)])
    return dict(event)


# --- events ------------------------------------------------------------------------------------


def register_events(commands: Subcommands) -> None:
    events = commands.add_parser(
        "events",
        help="write sample events, like `sam local generate-event`",
        description="write sample events, like `sam local generate-event`",
    )
    kinds = events.add_subparsers(required=True, metavar="KIND")
    for name, event_name in (("s3-put", "ObjectCreated:Put"), ("s3-delete", "ObjectRemoved:Delete")):
        kind = add_command(
            kinds,
            name,
            f"an SQS event carrying an S3 {event_name} notification, stamped now with a fresh sequencer",
            reads=(),
            example=f"filequeue events {name} --bucket filequeue-demo --key uploads/notes.md > {name}.json",
            handler=run_events,
        )
        kind.add_argument("--bucket", required=True)
        kind.add_argument("--key", required=True, help="the object key, unencoded")
        kind.add_argument("--size", type=int, default=1024)
        kind.add_argument("--etag", default="0123456789abcdef0123456789abcdef")
        kind.add_argument("--version-id", default=None)
        kind.add_argument("--sequencer", default=None, help="hex S3 sequencer (default: from the clock, so newer)")
        kind.add_argument("--event-time", default=None, help="ISO 8601 event time (default: now)")
        kind.set_defaults(event_name=event_name)


def run_events(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    from handlers.sample_events import message_body, s3_notification, sqs_event

    now = datetime.now(UTC)
    event_time = args.event_time or now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    notification = s3_notification(
        args.bucket,
        args.key,
        event_name=args.event_name,
        size=args.size if args.event_name.startswith("ObjectCreated") else None,
        etag=args.etag if args.event_name.startswith("ObjectCreated") else None,
        version_id=args.version_id,
        sequencer=args.sequencer or format(time.time_ns(), "018X"),
        event_time=event_time,
    )
    sent_ms = int(now.timestamp() * 1000)
    print(json.dumps(sqs_event([message_body(notification)], sent_timestamp_ms=sent_ms), indent=2))
    return 0


# --- worker, demo, dev -------------------------------------------------------------------------


def register_worker(commands: Subcommands) -> None:
    worker = add_command(
        commands,
        "worker",
        "long-poll the queue and run the handler (the EKS runtime); its logs are JSON lines",
        reads=(*QUEUE, *DATABASE, *EMBEDDER, "FILEQUEUE_WORKER_*", "FILEQUEUE_HEALTH_PORT", *AWS),
        example="FILEQUEUE_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/uploads filequeue worker",
        handler=run_worker_command,
    )
    worker.add_argument("--processes", type=int, default=None, help="worker processes (default: CPU count)")


def run_worker_command(args: argparse.Namespace) -> int:
    from handlers.worker import run_worker

    return run_worker(get_settings(), processes=args.processes)


def register_demo(commands: Subcommands) -> None:
    demo = add_command(
        commands,
        "demo",
        "the whole pipeline on the embedded stack (moto, PostgreSQL with pgvector), with a summary",
        reads=("none: it starts its own stack",),
        example="filequeue demo --processes 2",
        handler=run_demo_command,
    )
    demo.add_argument("--processes", type=int, default=2, help="worker processes")


def run_demo_command(args: argparse.Namespace) -> int:
    from handlers.demo import run_demo

    get_settings()  # the demo's worker reads the same FILEQUEUE_* variables: a bad one stops here
    report = run_demo(args.processes, out=_stderr if args.json else print)
    if args.json:
        _print_json(dataclasses.asdict(report))
    return 0 if report.queue_left == 0 and report.dead_letters == 0 else 1


def register_dev(commands: Subcommands) -> None:
    dev = add_command(
        commands,
        "dev",
        "keep the embedded stack and a worker running until Ctrl-C, SIGTERM or SIGHUP; prints how to use it",
        reads=("FILEQUEUE_HEALTH_PORT (a free port is used when it is taken)", *EMBEDDER),
        example="filequeue dev --data-dir .filequeue/dev",
        handler=run_dev_command,
    )
    dev.add_argument("--data-dir", type=Path, default=Path(".filequeue/dev"), help="where PostgreSQL keeps its data")
    dev.add_argument("--processes", type=int, default=1, help="worker processes")


def run_dev_command(args: argparse.Namespace) -> int:
    from handlers.demo import run_dev

    settings = get_settings()
    return run_dev(args.data_dir, args.processes, settings.health_port, settings=settings, as_json=args.json)


# --- search, graph, reembed --------------------------------------------------------------------


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
    search.add_argument("--limit", type=_positive_int, default=10, help="how many chunks (default 10)")
    search.add_argument(
        "--hybrid", action="store_true", help="fuse vector similarity with full-text ranking (reciprocal rank fusion)"
    )
    search.add_argument("--explain", action="store_true", help="show each hit's vector rank, text rank and fused score")
    search.add_argument("--prefix", default="", help="only documents whose key starts with this")
    search.add_argument("--content-type", default=None, help="only documents of this type, e.g. text/markdown")
    search.add_argument("--min-score", type=float, default=None, help="drop hits scoring below this")


def run_search(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue
    from handlers.ops.db import require_schema
    from handlers.ops.failed import count_failed

    settings = get_settings()
    with _database(settings) as conn:
        require_schema(conn)
        failed = count_failed(conn)
    with FileQueue(settings) as store:
        hits = store.search(
            args.text,
            hybrid=args.hybrid,
            limit=args.limit,
            prefix=args.prefix,
            content_type=args.content_type,
            min_score=args.min_score,
        )
    if failed:
        _stderr(f"note: {failed} documents failed and are not searchable; `filequeue failed` lists them")
    if args.json:
        _print_json([dataclasses.asdict(hit) for hit in hits])
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
    console.add_argument("--port", type=int, default=8765)


def run_console(args: argparse.Namespace) -> int:
    from handlers.api import FileQueue
    from handlers.console.server import check_bind_address, serve
    from handlers.ops.db import require_schema

    settings = get_settings()
    check_bind_address(args.host, settings.console_token)
    with _database(settings) as conn:
        require_schema(conn)
    with FileQueue(settings) as store:
        serve(store, host=args.host, port=args.port, token=settings.console_token)
    return 0


def register_graph(commands: Subcommands) -> None:
    from handlers.adapters.graph import MAX_HOPS

    graph = add_command(
        commands,
        "graph",
        "a document's neighbours in the graph, by relation",
        reads=DATABASE,
        example="filequeue graph uploads/tracemonkey.pdf --hops 2",
        handler=run_graph,
    )
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


def run_graph(args: argparse.Namespace) -> int:
    from handlers.adapters.graph import RELATIONS, find_document, neighbours
    from handlers.ops.db import require_schema

    with _database(get_settings()) as conn:
        require_schema(conn)
        try:
            document = find_document(conn, args.key, args.bucket)
        except LookupError as error:
            raise ConfigError(str(error.args[0])) from None
        found = neighbours(conn, document.id, hops=args.hops, relations=args.relation or RELATIONS)
    failure = f"{document.error_code}: {document.error}" if document.status == "failed" else None
    if args.json:
        listed = [dataclasses.asdict(neighbour) for neighbour in found]
        _print_json({"key": document.key, "status": document.status, "error": failure, "neighbours": listed})
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
    return 0


def register_reembed(commands: Subcommands) -> None:
    reembed = add_command(
        commands,
        "reembed",
        "move the store to the embedding model and dimension in the settings, search answering",
        reads=(*DATABASE, *EMBEDDER, "FILEQUEUE_SIMILAR_TOP_K", "FILEQUEUE_SIMILAR_THRESHOLD"),
        example="FILEQUEUE_EMBEDDING_DIMENSION=512 filequeue reembed --batch-size 256",
        handler=run_reembed,
    )
    reembed.add_argument("--batch-size", type=_positive_int, default=256, help="chunks per transaction (default 256)")
    reembed.add_argument(
        "--max-batches", type=_positive_int, default=None, help="stop after this many batches; run again to resume"
    )
    reembed.add_argument(
        "--no-switch", action="store_true", help="build the new vectors and their indexes, but do not switch yet"
    )


def run_reembed(args: argparse.Namespace) -> int:
    from handlers.adapters.embedders import build_embedder
    from handlers.adapters.reembed import ReembedOptions, reembed
    from handlers.ops.db import require_schema

    settings = get_settings()
    embedder = build_embedder(settings)
    options = ReembedOptions(
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        switch=not args.no_switch,
        similar_top_k=settings.similar_top_k,
        similar_threshold=settings.similar_threshold,
    )
    progress = _stderr if args.json else print
    with _database(settings) as conn:
        require_schema(conn)
        report = reembed(conn, embedder, options, on_batch=lambda batch: progress(f"batch {batch} written"))
    if args.json:
        _print_json(dataclasses.asdict(report))
        return 0
    target = f"{report.target.embedding_model!r} (dimension {report.target.embedding_dimension})"
    print(f"embedded {report.chunks_embedded} chunks in {report.batches} batches toward {target}")
    if report.complete:
        print(f"switched to {target}; similar edges recomputed for {report.documents_relinked} documents")
    else:
        print("not switched yet; run `filequeue reembed` again to continue")
    return 0


# --- status, failed, dlq, reconcile ------------------------------------------------------------


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
    from handlers.ops.status import healthy, queue_status, store_status

    settings = get_settings()
    with _database(settings) as conn:
        store = store_status(conn)
    queue = None
    if settings.queue_url:
        queue = queue_status(aws.client("sqs"), aws.client("cloudwatch"), settings.queue_url)
    if args.json:
        _print_json({"store": dataclasses.asdict(store), "queue": queue and dataclasses.asdict(queue)})
    else:
        _print_status(store, queue)
    return 0 if healthy(store, queue) else 1


def _print_status(store: Any, queue: Any) -> None:
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
    print(f"dlq:         {queue.dead_letters} messages ({queue.dead_letter_url})")


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
    failed.add_argument("--code", default=None, help="only this error code (see `filequeue status`)")
    failed.add_argument("--since", default=None, help="only failures since an ISO 8601 time or a duration (30m, 7d)")


def run_failed(args: argparse.Namespace) -> int:
    from handlers.ops.db import require_schema
    from handlers.ops.failed import failed_documents, parse_since

    since = parse_since(args.since) if args.since else None
    with _database(get_settings()) as conn:
        require_schema(conn)
        failures = failed_documents(conn, prefix=args.prefix, code=args.code, since=since)
        if args.json:
            _print_json([dataclasses.asdict(failure) for failure in failures])
            return 0
        rows = [["failed at", "error code", "key", "version", "reason"]]
        rows += [
            [
                failure.failed_at[:19],
                str(failure.error_code),
                failure.key,
                failure.version_id or "-",
                str(failure.error),
            ]
            for failure in failures
        ]
    print(_table(rows, right_aligned=0) if len(rows) > 1 else "no failed documents")
    return 0


def register_dlq(commands: Subcommands) -> None:
    dlq = commands.add_parser(
        "dlq", help="list the dead-letter queue, or send its messages back", description="the dead-letter queue"
    )
    actions = dlq.add_subparsers(required=True, metavar="ACTION")
    add_command(
        actions,
        "list",
        "every message in the DLQ: bucket, key, event, receive count, times and the failure reason",
        reads=(*QUEUE, *DATABASE, *AWS),
        example="filequeue dlq list --json | jq '.[].key'",
        handler=run_dlq_list,
    )
    redrive = add_command(
        actions,
        "redrive",
        "send DLQ messages back to the source queue (StartMessageMoveTask for --all where SQS offers it,"
        " otherwise receive, send, then delete)",
        reads=(*QUEUE, *AWS),
        example="filequeue dlq redrive --id 0f7d3c2e-... --dry-run\nfilequeue dlq redrive --all",
        handler=run_dlq_redrive,
    )
    chosen = redrive.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true", help="every message")
    chosen.add_argument("--id", nargs="+", metavar="ID", help="these message ids (from `filequeue dlq list`)")
    redrive.add_argument("--dry-run", action="store_true", help="say what would be sent; move nothing")


def run_dlq_list(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.dlq import list_dead_letters

    settings = get_settings()
    queue_url = settings.require_queue()
    sqs = aws.client("sqs")
    dlq_url = aws.dead_letter_queue_url(sqs, queue_url)
    letters = list_dead_letters(sqs, dlq_url, recorded=_recorded_failures(settings))
    if args.json:
        _print_json([dataclasses.asdict(letter) for letter in letters])
        return 0
    if not letters:
        print(f"the DLQ is empty ({dlq_url})")
        return 0
    rows = [["receives", "message id", "sent", "first received", "last failed", "event", "key", "reason"]]
    rows += [
        [
            str(letter.receive_count),
            letter.message_id,
            letter.sent_at or "-",
            letter.first_received_at or "-",
            letter.last_failed_at or "-",
            letter.event_name or "-",
            f"s3://{letter.bucket}/{letter.key}" if letter.key else "-",
            letter.reason or "no reason recorded (a transient failure: see the worker or Lambda log)",
        ]
        for letter in letters
    ]
    print(_table(rows, right_aligned=1))
    return 0


def _recorded_failures(settings: Settings) -> Callable[[str, str | None, str | None], RecordedFailure | None]:
    """What the handler kept about a message id, else the store's failure for its key (without a database: none)."""
    from handlers.ops.dlq import recorded_failure

    if not (settings.database_url or settings.database_secret_arn):
        return lambda message_id, bucket, key: None
    from handlers.ops.db import connect, database_url

    url = database_url(settings)

    def lookup(message_id: str, bucket: str | None, key: str | None) -> RecordedFailure | None:
        with connect(url, timeout_seconds=settings.db_connect_timeout_seconds) as conn:
            return recorded_failure(conn, message_id, bucket, key)

    return lookup


def run_dlq_redrive(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.dlq import redrive

    source_url = get_settings().require_queue()
    sqs = aws.client("sqs")
    dlq_url = aws.dead_letter_queue_url(sqs, source_url)
    report = redrive(sqs, dlq_url, source_url, message_ids=None if args.all else args.id, dry_run=args.dry_run)
    if args.json:
        _print_json(dataclasses.asdict(report))
    else:
        if report.fallback_reason:
            print(f"{report.fallback_reason}; moving messages one by one")
        if report.task_handle:
            print(f"started a StartMessageMoveTask to {source_url} (task {report.task_handle})")
        else:
            verb = "would send" if report.dry_run else "sent"
            print(f"{verb} {len(report.moved)} messages to {source_url} by {report.method}")
            for message_id in report.moved:
                print(f"  {message_id}")
        for message_id in report.not_found:
            print(f"not in the DLQ: {message_id}")
    return 1 if report.not_found else 0


def register_reconcile(commands: Subcommands) -> None:
    from handlers.ops.reconcile import DEFAULT_PAGE_SIZE

    reconcile = add_command(
        commands,
        "reconcile",
        "compare a bucket with the store and enqueue what is new, changed or gone, as S3 events through the queue",
        reads=(*QUEUE, *DATABASE, *AWS),
        example="filequeue reconcile --bucket filequeue-demo --prefix uploads/ --dry-run",
        handler=run_reconcile,
    )
    reconcile.add_argument("--bucket", required=True, help="the bucket to compare")
    reconcile.add_argument("--prefix", default="uploads/", help="only keys under this prefix (default uploads/)")
    reconcile.add_argument("--dry-run", action="store_true", help="count the differences; enqueue nothing")
    reconcile.add_argument(
        "--page-size", type=_positive_int, default=DEFAULT_PAGE_SIZE, help="keys per listing and per store page"
    )
    reconcile.add_argument("--start-after", default="", help="resume after this key (the last key a run printed)")


def run_reconcile(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.db import require_schema
    from handlers.ops.reconcile import reconcile

    settings = get_settings()
    queue_url = settings.require_queue()
    with _database(settings) as conn:
        require_schema(conn)
        report = reconcile(
            aws.client("s3"),
            aws.client("sqs"),
            conn,
            bucket=args.bucket,
            queue_url=queue_url,
            prefix=args.prefix,
            dry_run=args.dry_run,
            page_size=args.page_size,
            start_after=args.start_after,
        )
    if args.json:
        _print_json(dataclasses.asdict(report))
        return 0
    action = "would enqueue" if report.dry_run else "enqueued"
    print(
        f"s3://{report.bucket}/{report.prefix}: {report.listed} objects listed, {report.unchanged} unchanged,"
        f" {report.new} new, {report.changed} changed, {report.gone} gone"
    )
    print(f"{action} {report.new + report.changed + report.gone} events to {queue_url}")
    if report.last_key:
        print(f"last key: {report.last_key} (--start-after resumes after it)")
    for kind, keys in report.samples.items():
        for key in keys:
            print(f"  {kind}: {key}")
    return 0


REGISTRATIONS: list[Callable[[Subcommands], None]] = [
    register_status,
    register_failed,
    register_dlq,
    register_reconcile,
    register_migrate,
    register_search,
    register_console,
    register_graph,
    register_reembed,
    register_compact,
    register_invoke,
    register_events,
    register_worker,
    register_demo,
    register_dev,
]


# --- shared helpers ----------------------------------------------------------------------------


def _database(settings: Settings) -> Any:
    from handlers.ops.db import connect, database_url

    settings.require_database()
    return connect(database_url(settings), timeout_seconds=settings.db_connect_timeout_seconds)


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _fail(message: str) -> int:
    # Driver messages span lines ("connection refused\n\tIs the server running ..."): keep it to one.
    print(f"filequeue: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def _describe_library_error(error: Exception) -> str:
    """One line for an error a library raised, naming what to look at; the type says where it came from."""
    module = type(error).__module__.split(".", 1)[0]
    where = {"psycopg": "database", "botocore": "AWS", "boto3": "AWS"}.get(module)
    if where is None:
        raise error
    return f"{where} error: {str(error) or type(error).__name__}"


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


def _whole_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None


def _positive_int(value: str) -> int:
    number = _whole_number(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


if __name__ == "__main__":
    raise SystemExit(main())
