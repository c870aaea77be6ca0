"""`filequeue`: run, inspect and operate File Queue from a shell.

Every command reads its configuration from FILEQUEUE_* and the standard AWS variables, prints a
table for people or JSON with --json, and turns a bad input into one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from handlers.cli import develop, operate, query
from handlers.cli.common import Formatter, describe_library_error, fail
from handlers.errors import FileQueueError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# The order `filequeue --help` lists them in: reading, then operating, then a developer's own.
REGISTRATIONS = [*query.REGISTRATIONS, *operate.REGISTRATIONS, *develop.REGISTRATIONS]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command_parser: argparse.ArgumentParser = getattr(args, "command_parser", parser)
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except FileQueueError as error:
        return fail(str(error))
    except BrokenPipeError:
        # The reader went away (`filequeue search ... | head`): stop writing, and keep Python from
        # reporting the broken pipe again while it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return fail("output closed early (broken pipe); nothing else went wrong")
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - library errors become one line, never a traceback
        return fail(describe_library_error(error))


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="filequeue", description=__doc__, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"filequeue {version('filequeue')}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for register in REGISTRATIONS:
        register(commands)
    return parser
