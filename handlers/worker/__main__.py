"""`python -m handlers.worker [--processes N]`: the worker without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from handlers.errors import FileQueueError
from handlers.settings import get_settings
from handlers.worker import run_worker


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.worker", description=__doc__)
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: one per CPU)")
    args = parser.parse_args()
    try:
        return run_worker(get_settings(), processes=args.processes)
    except FileQueueError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)  # noqa: T201  (a command's one error line)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
