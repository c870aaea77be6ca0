"""`filequeue`: migrate, invoke the handler on a sample event, generate events, run the worker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import FileQueueError
from handlers.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


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
    return parser


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

    from handlers.sample_events import s3_notification, sqs_event

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
    print(json.dumps(sqs_event([json.dumps(notification)]), indent=2))
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

    return run_dev(args.data_dir, args.processes)


if __name__ == "__main__":
    raise SystemExit(main())
