"""`filequeue compact`: seal the growing chunk area and merge segments now, then print the store's layout."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from handlers.adapters.segments import CompactReport


def add_compact_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compact = commands.add_parser(
        "compact", help="move new chunks into indexed segments and merge segments (safe to run any time)"
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
    compact.add_argument("--json", action="store_true", help="print the report as JSON")
    compact.set_defaults(command=_compact)


def _compact(args: argparse.Namespace) -> int:
    from handlers.compaction import compact_options, report_as_dict, run_compaction
    from handlers.settings import get_settings

    settings = get_settings()
    options = compact_options(settings, force_seal=args.seal, merge_all=args.merge_all, merge_factor=args.merge_factor)
    report = run_compaction(settings, options)
    if args.json:
        print(json.dumps(report_as_dict(report), indent=2))
    else:
        print(describe(report))
    return 0


def describe(report: CompactReport) -> str:
    if report.skipped:
        return f"nothing done: {report.skipped}"
    lines = [f"sealed {report.sealed_rows} chunks; {report.merges} merges of {report.merged_rows} chunks"]
    if report.layout is not None:
        layout = report.layout
        lines.append(f"growing (searched exactly): {layout.growing_rows} chunks")
        lines.append(f"live (HNSW updated per row): {layout.live_rows} chunks")
        for segment in layout.segments:
            lines.append(f"segment {segment.number} (HNSW built once): {segment.rows} chunks")
    return "\n".join(lines)


def _at_least_two(value: str) -> int:
    import argparse

    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {number}")
    return number
