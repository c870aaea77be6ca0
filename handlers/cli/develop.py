"""Commands for a developer's machine: demo, dev, invoke, events (the embedded stack and sample events)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.cli.common import (
    DATABASE,
    EMBEDDER,
    add_command,
    print_json,
    stderr_line,
)
from handlers.errors import ConfigError
from handlers.settings import get_settings

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from handlers.cli.common import Subcommands


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
    from handlers.develop.demo import run_demo

    settings = get_settings()  # the demo's worker reads the same FILEQUEUE_* variables: a bad one stops here
    report = run_demo(args.processes, settings=settings, out=stderr_line if args.json else print)
    if args.json:
        print_json(dataclasses.asdict(report))
    return 0 if report.queue_left == 0 and report.dead_letters == 0 else 1


def register_dev(commands: Subcommands) -> None:
    dev = add_command(
        commands,
        "dev",
        "keep the embedded stack and a worker running until Ctrl-C, SIGTERM or SIGHUP; prints how to use it."
        " The next start on the same --data-dir brings back the store, the bucket's objects, the queues and"
        " their messages, on the same endpoint",
        reads=("FILEQUEUE_HEALTH_PORT (a free port is used when it is taken)", *EMBEDDER),
        example="filequeue dev --data-dir .filequeue/dev",
        handler=run_dev_command,
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".filequeue/dev"),
        help="where PostgreSQL keeps its data, and S3 and SQS theirs (default .filequeue/dev)",
    )
    dev.add_argument(
        "--reset", action="store_true", help="start empty: remove the store, the objects, queues and messages first"
    )
    dev.add_argument("--processes", type=int, default=1, help="worker processes")


def run_dev_command(args: argparse.Namespace) -> int:
    from handlers.develop.demo import run_dev

    settings = get_settings()
    return run_dev(
        args.data_dir, args.processes, settings.health_port, settings=settings, reset=args.reset, as_json=args.json
    )


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
        "--fail-on-item-failures",
        action="store_true",
        help="exit with code 1 when a record failed: reported for a retry, or failed for good (recorded, acknowledged)",
    )


def run_invoke(args: argparse.Namespace) -> int:
    from handlers import outcome_metrics
    from handlers.batch import handle_batch, logger
    from handlers.ops.db import database_url
    from handlers.runtime_context import DeadlineContext
    from handlers.wiring import get_deps

    event = _sqs_event(_read_event(args.event), args.event)
    # A permanent failure is acknowledged, so the response cannot show it: the tally counts it.
    tally = outcome_metrics.OutcomeTally()
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
            outcome_metrics.install(tally)
            response = dict(handle_batch(event, DeadlineContext.lasting(args.timeout)))
        finally:
            outcome_metrics.install(None)
            log_handler.setStream(previous_stream)
    print(json.dumps(response))
    failed = bool(response.get("batchItemFailures")) or tally.failed > 0
    return 1 if args.fail_on_item_failures and failed else 0


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
    from handlers.ops.s3_events import message_body, sqs_event

    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ConfigError(f"{source} is not a Lambda SQS event or an S3 notification (no Records list)")
    if records and all(isinstance(record, dict) and record.get("eventSource") == "aws:s3" for record in records):
        print(f"filequeue: note: {source} is an S3 notification; wrapped into an SQS event", file=sys.stderr)
        return sqs_event([message_body(event)])
    return dict(event)


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

    from handlers.ops.s3_events import message_body, s3_notification, sqs_event

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


REGISTRATIONS: list[Callable[[Subcommands], None]] = [
    register_demo,
    register_dev,
    register_invoke,
    register_events,
]
