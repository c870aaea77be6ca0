"""Commands that maintain a deployment: dlq, reconcile, migrate, compact, reembed, worker."""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from handlers.cli.common import (
    AWS,
    DATABASE,
    EMBEDDER,
    QUEUE,
    add_command,
    at_least_two,
    plural,
    positive_int,
    print_json,
    stderr_line,
    table,
)
from handlers.settings import get_settings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    import psycopg

    from handlers.cli.common import Subcommands
    from handlers.ops.dlq import DeadLetter, DropReport, RecordedFailure
    from handlers.settings import Settings


def register_dlq(commands: Subcommands) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list the dead-letter queue, send its messages back, or drop them",
        description="the dead-letter queue",
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
    delete = add_command(
        actions,
        "delete",
        "drop chosen messages from the DLQ (a poison message that would only fail again); each dropped message"
        " is printed and logged as a JSON line on stderr",
        reads=(*QUEUE, *DATABASE, *AWS),
        example="filequeue dlq delete --id 0f7d3c2e-... --dry-run\nfilequeue dlq delete --id 0f7d3c2e-... --id 5b1e...",
        handler=run_dlq_delete,
    )
    delete.add_argument(
        "--id",
        required=True,
        action="extend",
        nargs="+",
        metavar="ID",
        help="a message id (from `filequeue dlq list`); repeat --id or give several",
    )
    delete.add_argument("--dry-run", action="store_true", help="list what would be dropped; drop nothing")
    purge = add_command(
        actions,
        "purge",
        "drop every message in the DLQ; asks to type yes on a terminal, needs --yes otherwise;"
        " each dropped message is printed and logged as a JSON line on stderr",
        reads=(*QUEUE, *DATABASE, *AWS),
        example="filequeue dlq purge --dry-run\nfilequeue dlq purge --yes",
        handler=run_dlq_purge,
    )
    purge.add_argument("--dry-run", action="store_true", help="list what would be dropped; drop nothing")
    purge.add_argument("--yes", action="store_true", help="drop without asking (required when stdin is not a terminal)")


def run_dlq_list(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.dlq import list_dead_letters

    settings = get_settings()
    queue_url = settings.require_queue()
    sqs = aws.client("sqs")
    dlq_url = aws.dead_letter_queue_url(sqs, queue_url)
    with ExitStack() as database:
        letters = list_dead_letters(sqs, dlq_url, recorded=_recorded_failures(settings, database))
    if args.json:
        print_json([dataclasses.asdict(letter) for letter in letters])
        return 0
    if not letters:
        print(f"the DLQ is empty ({dlq_url})")
        return 0
    print(_letters_table(letters))
    return 0


def _letters_table(letters: list[DeadLetter]) -> str:
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
    return table(rows, right_aligned=1)


def _recorded_failures(
    settings: Settings, database: ExitStack
) -> Callable[[str, str | None, str | None], RecordedFailure | None]:
    """What the handler kept about a message id, else the store's failure for its key (without a database: none).

    The session opens at the first message, so an empty DLQ needs no database; `database` closes it.
    """
    from handlers.ops.db import session
    from handlers.ops.dlq import recorded_failure

    if not (settings.database_url or settings.database_secret_arn):
        return lambda message_id, bucket, key: None
    opened: list[psycopg.Connection[Any]] = []

    def lookup(message_id: str, bucket: str | None, key: str | None) -> RecordedFailure | None:
        if not opened:
            opened.append(database.enter_context(session(settings)))
        return recorded_failure(opened[0], message_id, bucket, key)

    return lookup


def run_dlq_delete(args: argparse.Namespace) -> int:
    report, dlq_url = _drop_letters(args.id, dry_run=args.dry_run)
    return _print_dropped(args, report, dlq_url)


def run_dlq_purge(args: argparse.Namespace) -> int:
    import sys

    from handlers.errors import ConfigError

    get_settings()  # a malformed setting is reported before the question of confirmation
    if args.dry_run or args.yes:
        report, dlq_url = _drop_letters(None, dry_run=args.dry_run)
        return _print_dropped(args, report, dlq_url)
    if not sys.stdin.isatty():
        raise ConfigError("dlq purge drops every message: pass --yes to confirm (stdin is not a terminal to ask on)")
    shown, dlq_url = _drop_letters(None, dry_run=True)
    if not shown.dropped:
        return _print_dropped(args, shown, dlq_url)
    show = stderr_line if args.json else print
    show(f"the DLQ holds {plural(len(shown.dropped), 'message')} ({dlq_url}):")
    show(_letters_table(shown.dropped))
    sys.stderr.write(f"type yes to drop {'it' if len(shown.dropped) == 1 else 'them'}: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != "yes":
        stderr_line("nothing dropped")
        return 1
    # Exactly the messages shown: one that arrived while the question was asked is never dropped unseen.
    report, _ = _drop_letters([letter.message_id for letter in shown.dropped], dry_run=False)
    return _print_dropped(args, report, dlq_url)


def _drop_letters(message_ids: list[str] | None, *, dry_run: bool) -> tuple[DropReport, str]:
    """Drop (or, on a dry run, only describe) DLQ messages, logging each one dropped; the report and the DLQ's URL."""
    from handlers.ops import aws
    from handlers.ops.dlq import drop_dead_letters

    settings = get_settings()
    sqs = aws.client("sqs")
    dlq_url = aws.dead_letter_queue_url(sqs, settings.require_queue())
    with ExitStack() as database:
        report = drop_dead_letters(
            sqs,
            dlq_url,
            message_ids=message_ids,
            dry_run=dry_run,
            recorded=_recorded_failures(settings, database),
            on_dropped=lambda letter: _log_dropped(letter, dlq_url),
        )
    return report, dlq_url


def _print_dropped(args: argparse.Namespace, report: DropReport, dlq_url: str) -> int:
    if args.json:
        print_json(dataclasses.asdict(report))
    else:
        verb = "would drop" if report.dry_run else "dropped"
        print(f"{verb} {plural(len(report.dropped), 'message')} from {dlq_url}")
        if report.dropped:
            print(_letters_table(report.dropped))
        for message_id in report.not_found:
            print(f"not in the DLQ: {message_id}")
    return 1 if report.not_found else 0


def _log_dropped(letter: DeadLetter, dlq_url: str) -> None:
    """The record an operator finds later of what went: one JSON line on stderr, as the worker logs."""
    import json
    import sys
    from datetime import UTC, datetime

    entry = {
        "level": "INFO",
        "message": "dropped a message from the DLQ",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "service": "filequeue",
        "dead_letter_queue_url": dlq_url,
        "message_id": letter.message_id,
        "bucket": letter.bucket,
        "key": letter.key,
        "event_name": letter.event_name,
        "receive_count": letter.receive_count,
        "reason": letter.reason,
    }
    print(json.dumps(entry, ensure_ascii=False), file=sys.stderr, flush=True)


def run_dlq_redrive(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.dlq import redrive

    source_url = get_settings().require_queue()
    sqs = aws.client("sqs")
    dlq_url = aws.dead_letter_queue_url(sqs, source_url)
    report = redrive(sqs, dlq_url, source_url, message_ids=None if args.all else args.id, dry_run=args.dry_run)
    if args.json:
        print_json(dataclasses.asdict(report))
    else:
        if report.fallback_reason:
            print(f"{report.fallback_reason}; moving messages one by one")
        if report.task_handle:
            print(f"started a StartMessageMoveTask to {source_url} (task {report.task_handle})")
        else:
            verb = "would send" if report.dry_run else "sent"
            print(f"{verb} {plural(len(report.moved), 'message')} to {source_url} by {report.method}")
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
        "--page-size", type=positive_int, default=DEFAULT_PAGE_SIZE, help="keys per listing and per store page"
    )
    reconcile.add_argument("--start-after", default="", help="resume after this key (the last key a run printed)")


def run_reconcile(args: argparse.Namespace) -> int:
    from handlers.ops import aws
    from handlers.ops.db import session
    from handlers.ops.reconcile import reconcile

    settings = get_settings()
    queue_url = settings.require_queue()
    with session(settings) as conn:
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
        print_json(dataclasses.asdict(report))
        return 0
    action = "would enqueue" if report.dry_run else "enqueued"
    print(
        f"s3://{report.bucket}/{report.prefix}: {plural(report.listed, 'object')} listed, {report.unchanged} unchanged,"
        f" {report.new} new, {report.changed} changed, {report.gone} gone"
    )
    print(f"{action} {plural(report.new + report.changed + report.gone, 'event')} to {queue_url}")
    if report.last_key:
        print(f"last key: {report.last_key} (--start-after resumes after it)")
    for kind, keys in report.samples.items():
        for key in keys:
            print(f"  {kind}: {key}")
    return 0


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
    from handlers.ops.db import migrate_store

    applied = migrate_store(get_settings())
    if args.json:
        print_json({"applied": applied})
    else:
        print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


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
        "--merge-factor", type=at_least_two, default=4, help="segments of one size tier merged together (default 4)"
    )


def run_compact(args: argparse.Namespace) -> int:
    from handlers.ops.compaction import compact_options, run_compaction

    settings = get_settings()
    options = compact_options(settings, force_seal=args.seal, merge_all=args.merge_all, merge_factor=args.merge_factor)
    report = run_compaction(settings, options)
    if args.json:
        print_json(dataclasses.asdict(report))
        return 0
    if report.skipped:
        print(f"nothing done: {report.skipped}")
        return 0
    merges = plural(report.merges, "merge")
    print(f"sealed {plural(report.sealed_rows, 'chunk')}; {merges} of {plural(report.merged_rows, 'chunk')}")
    if report.layout is not None:
        layout = report.layout
        print(f"growing (searched exactly): {plural(layout.growing_rows, 'chunk')}")
        if not report.sealed_rows and not (args.seal or args.merge_all):
            print(
                f"  the growing area is sealed once it holds FILEQUEUE_COMPACTION_SEAL_ROWS"
                f" ({options.seal_rows:,}) chunks; --seal seals it now"
            )
        print(f"live (HNSW updated per row): {plural(layout.live_rows, 'chunk')}")
        for segment in layout.segments:
            print(f"segment {segment.number} (HNSW built once): {plural(segment.rows, 'chunk')}")
    return 0


def register_reembed(commands: Subcommands) -> None:
    reembed = add_command(
        commands,
        "reembed",
        "move the store to the embedding model and dimension in the settings, search answering",
        reads=(*DATABASE, *EMBEDDER, "FILEQUEUE_SIMILAR_TOP_K", "FILEQUEUE_SIMILAR_MIN_WEIGHT"),
        example="FILEQUEUE_EMBEDDING_DIMENSION=512 filequeue reembed --batch-size 256",
        handler=run_reembed,
    )
    reembed.add_argument("--batch-size", type=positive_int, default=256, help="chunks per transaction (default 256)")
    reembed.add_argument(
        "--max-batches", type=positive_int, default=None, help="stop after this many batches; run again to resume"
    )
    reembed.add_argument(
        "--no-switch", action="store_true", help="build the new vectors and their indexes, but do not switch yet"
    )


def run_reembed(args: argparse.Namespace) -> int:
    from handlers.ops.reembed import reembed_store

    progress = stderr_line if args.json else print
    report = reembed_store(
        get_settings(),
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        switch=not args.no_switch,
        on_batch=lambda batch: progress(f"batch {batch} written"),
    )
    if args.json:
        print_json(dataclasses.asdict(report))
        return 0
    target = f"{report.target.embedding_model!r} (dimension {report.target.embedding_dimension})"
    embedded = f"{plural(report.chunks_embedded, 'chunk')} in {plural(report.batches, 'batch', 'batches')}"
    print(f"embedded {embedded} toward {target}")
    if report.complete:
        print(f"switched to {target}; similar edges recomputed for {plural(report.documents_relinked, 'document')}")
    else:
        print("not switched yet; run `filequeue reembed` again to continue")
    return 0


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


REGISTRATIONS: list[Callable[[Subcommands], None]] = [
    register_dlq,
    register_reconcile,
    register_migrate,
    register_compact,
    register_reembed,
    register_worker,
]
