"""The examples of README.md and docs/*.md, run as a reader runs them: against `filequeue dev`, from a shell.

A small extractor rather than a plugin: pytest-markdown-docs and pytest-examples run Python blocks only,
and mktestdocs runs shell blocks but neither in a given environment nor against the output a page shows.
What a block is comes from its fence and the `<!-- docs-test: ... -->` comment before it (docs/tests.md).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.functional.cli_process import clean_environment, dev_client, running_dev, wait_for
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from tests.functional.cli_process import DevProcess

PAGES = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "docs" / "README.md",
    *sorted(path for path in (REPO_ROOT / "docs").glob("*.md") if path.name != "README.md"),
]
RUN = {"bash", "console", "python"}
NOT_CODE = {"text", "json", "yaml"}
FENCE = re.compile(r"^( *)```(\S*)[ \t]*$")
MARKER = re.compile(r"^<!-- docs-test: (.+?) -->$")
NOT_RUN = "not run here: "
OUTPUT_OF = "output of: "
OUTPUT_OF_BLOCK_ABOVE = "output of the block above"
DECIMAL = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, dedented, each with the docs-test comment just before it."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent, language = fence.group(1), fence.group(2)
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        code = "\n".join(line[len(indent) :] for line in lines[index + 1 : end]) + "\n"
        previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        found.append(Block(page, index + 1, language, code, marker.group(1) if marker else None))
        index = end + 1
    return found


def _normalised(line: str) -> str:
    """Decimal figures (times, rates, scores) vary from run to run and machine to machine: not compared."""
    return DECIMAL.sub("#", line.rstrip())


def missing_output(shown: str, printed: str) -> list[str]:
    """The lines of `shown` not found, in order, in `printed`.

    `...` lines are skipped; a line ending in `…` matches the start of a printed line.
    """
    actual = [_normalised(line) for line in printed.splitlines()]
    position = 0
    missing: list[str] = []
    for line in shown.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        expected = _normalised(line)
        prefix = expected.endswith("…")
        expected = expected.removesuffix("…")
        match = next(
            (
                i
                for i in range(position, len(actual))
                if (actual[i].startswith(expected) if prefix else actual[i] == expected)
            ),
            None,
        )
        if match is None:
            missing.append(line)
        else:
            position = match + 1
    return missing


def console_commands(code: str) -> list[tuple[str, str]]:
    """(command, the output shown under it) for each `$ ` line of a console block."""
    commands: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            assert commands, f"output before any command: {line!r}"
            commands[-1][1].append(line)
    return [(command, "\n".join(shown)) for command, shown in commands]


def filequeue_invocations(code: str) -> list[list[str]]:
    """The arguments after `filequeue` on each command line of a shell block (continuations joined)."""
    invocations = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for start, word in enumerate(words):
            if Path(word).name == "filequeue":
                arguments = []
                for argument in words[start + 1 :]:
                    if argument in {"|", "&&", ";", ">", "<"}:
                        break
                    arguments.append(argument)
                invocations.append(arguments)
    return invocations


class Shell:
    """A reader's shell: `filequeue` from this checkout on the PATH, the lines `filequeue dev` says to paste
    (its exports and the `aws` function), a scratch directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        shim = self.bin / "filequeue"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m handlers.cli "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
        # The scratch directory mirrors the repository's top level, so paths in examples resolve and
        # files an example writes stay out of the checkout.
        self.workdir = tmp_path / "work"
        self.workdir.mkdir()
        for entry in REPO_ROOT.iterdir():
            if not entry.name.startswith("."):
                (self.workdir / entry.name).symlink_to(entry)
        self.exports: dict[str, str] = {}
        self.setup = ""
        self._help: dict[tuple[str, ...], str] = {}

    def environment(self) -> dict[str, str]:
        path = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent), os.environ["PATH"]])
        return clean_environment({**self.exports, "PATH": path, "PYTHONPATH": str(REPO_ROOT)})

    def run(
        self, argv: list[str], *, stdin: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            input=stdin,
            env=self.environment(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def bash(self, script: str, where: str) -> str:
        result = self.run(["bash", "-euo", "pipefail", "-c", self.setup + script])
        assert result.returncode == 0, f"{where}: exit {result.returncode}\n{script}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
        return result.stdout + result.stderr

    def help(self, arguments: list[str]) -> str:
        """The `--help` of the (sub)command `arguments` start with: two words if that is a command, else one."""
        words = [word for word in arguments[:2] if not word.startswith("-")]
        for length in (2, 1):
            command = tuple(words[:length])
            if len(command) != length:
                continue
            if command not in self._help:
                result = self.run(["filequeue", *command, "--help"], timeout=60)
                self._help[command] = result.stdout if result.returncode == 0 else ""
            if self._help[command] and (length == 1 or "usage: filequeue " + " ".join(command) in self._help[command]):
                return self._help[command]
        return ""


def wait_until_drained(dev: DevProcess) -> None:
    """Until the worker has taken every message an example sent (it deletes each after its commit)."""
    sqs = dev_client(dev, "sqs")

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=dev.exports["FILEQUEUE_QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return bool(
            attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    wait_for(drained, timeout=120, message="the worker drains the queue")


def test_every_fenced_block_says_what_it_is() -> None:
    for page in PAGES:
        for block in blocks(page):
            assert block.language in RUN | NOT_CODE, f"{block.where}: fence language {block.language!r}"
            if block.marker is not None:
                assert block.marker.startswith((NOT_RUN, OUTPUT_OF)) or block.marker == OUTPUT_OF_BLOCK_ABOVE, (
                    f"{block.where}: unknown docs-test comment {block.marker!r}"
                )


def test_shown_output_is_compared_line_by_line() -> None:
    printed = "rank   score\n   1  0.0315    13  uploads/a.pdf  …long snippet\n   2  0.0305     2  uploads/b.md  …x\n"

    assert missing_output("   1  0.0999    13  uploads/a.pdf  …long…\n...\n", printed) == []
    assert missing_output(
        "   2  0.0305     2  uploads/b.md  …x\n   1  0.0315    13  uploads/a.pdf  …long snippet\n", printed
    ) == ["   1  0.0315    13  uploads/a.pdf  …long snippet"]
    assert missing_output("   1  0.0315    14  uploads/a.pdf…\n", printed) == ["   1  0.0315    14  uploads/a.pdf…"]


@pytest.mark.slow
def test_the_examples_run_and_print_what_they_show(tmp_path: Path) -> None:
    shell = Shell(tmp_path)
    ran: list[str] = []
    with ExitStack() as resources:
        dev: DevProcess | None = None

        def stack() -> DevProcess:
            nonlocal dev
            if dev is None:
                # Started for the first block that needs it: the demo runs a stack of its own.
                dev = resources.enter_context(running_dev(tmp_path / "dev-data", env={"FILEQUEUE_HEALTH_PORT": "0"}))
                shell.exports = dev.exports
                shell.setup = dev.shell_setup
            return dev

        for page in PAGES:
            page_blocks = blocks(page)
            for index, block in enumerate(page_blocks):
                marker = block.marker or ""
                if marker.startswith(NOT_RUN):
                    for arguments in filequeue_invocations(block.code):
                        help_text = shell.help(arguments)
                        assert help_text, f"{block.where}: `filequeue {' '.join(arguments)}` names no command"
                        flags = [word.split("=")[0] for word in arguments if word.startswith("--")]
                        assert [flag for flag in flags if flag not in help_text] == [], f"{block.where}: unknown flag"
                    continue
                if marker.startswith(OUTPUT_OF):
                    command = marker.removeprefix(OUTPUT_OF).strip("`")
                    printed = shell.bash(command, block.where)
                    assert missing_output(block.code, printed) == [], f"{block.where}: {command}\n{printed}"
                elif block.language == "python":
                    stack()
                    result = shell.run([sys.executable, "-c", block.code], timeout=120)
                    assert result.returncode == 0, f"{block.where}\n{result.stderr}"
                    following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
                    if following is not None and following.marker == OUTPUT_OF_BLOCK_ABOVE:
                        assert missing_output(following.code, result.stdout) == [], f"{block.where}\n{result.stdout}"
                elif block.language == "bash":
                    running = stack()
                    shell.bash(block.code, block.where)
                    wait_until_drained(running)
                elif block.language == "console":
                    stack()
                    for command, shown in console_commands(block.code):
                        printed = shell.bash(command, block.where)
                        assert missing_output(shown, printed) == [], f"{block.where}: {command}\n{printed}"
                else:
                    continue
                ran.append(block.where)
    assert any("docs/README.md" in where for where in ran), "the block that loads the demo's files did not run"
