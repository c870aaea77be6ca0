"""`python -m handlers.worker [--processes N]`: the worker without the rest of the CLI."""

from __future__ import annotations

import argparse

from handlers.settings import get_settings
from handlers.worker import run_worker


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m handlers.worker", description=__doc__)
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: one per CPU)")
    args = parser.parse_args()
    return run_worker(get_settings(), processes=args.processes)


if __name__ == "__main__":
    raise SystemExit(main())
