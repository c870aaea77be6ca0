"""What every `filequeue` command shares: its --help layout, JSON and table output, one-line errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeAlias

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_USAGE = 2
DATABASE = ("FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN)", "FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS")
EMBEDDER = ("FILEQUEUE_EMBEDDER", "FILEQUEUE_EMBEDDING_MODEL", "FILEQUEUE_EMBEDDING_DIMENSION")
AWS = ("AWS_REGION", "AWS_ENDPOINT_URL (moto, LocalStack)", "AWS credentials")
QUEUE = ("FILEQUEUE_QUEUE_URL",)


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
        name, help=summary, description=summary, epilog=epilog, formatter_class=Formatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of text")
    # An argument this parser does not know is reported with its usage, not the top-level one.
    parser.set_defaults(command_parser=parser)
    if handler is not None:
        parser.set_defaults(command=handler)
    return parser


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr)


def fail(message: str) -> int:
    # Driver messages span lines ("connection refused\n\tIs the server running ..."): keep it to one.
    print(f"filequeue: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def describe_library_error(error: Exception) -> str:
    """One line for an error a library raised, naming what to look at; the type says where it came from."""
    module = type(error).__module__.split(".", 1)[0]
    where = {"psycopg": "database", "botocore": "AWS", "boto3": "AWS"}.get(module)
    if where is None:
        raise error
    return f"{where} error: {str(error) or type(error).__name__}"


def table(rows: list[list[str]], *, right_aligned: int) -> str:
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


def whole_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {value!r}") from None


def positive_int(value: str) -> int:
    number = whole_number(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def at_least_two(value: str) -> int:
    number = whole_number(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {number}")
    return number


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 chunk`, `2 chunks`: a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def port_number(value: str) -> int:
    number = whole_number(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 0-65535 (0: any free port), got {number}")
    return number
