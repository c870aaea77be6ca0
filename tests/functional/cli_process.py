"""Run `filequeue` as a user does: a separate process, configured only through its environment."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

_INHERITED_PREFIXES = ("FILEQUEUE_", "AWS_")

# Every command and subcommand of `filequeue`; the help test checks that none is missing.
SUBCOMMANDS = [
    ["status"],
    ["failed"],
    ["dlq", "list"],
    ["dlq", "redrive"],
    ["dlq", "delete"],
    ["dlq", "purge"],
    ["reconcile"],
    ["migrate"],
    ["search"],
    ["console"],
    ["graph"],
    ["reembed"],
    ["compact"],
    ["invoke"],
    ["events", "s3-put"],
    ["events", "s3-delete"],
    ["worker"],
    ["demo"],
    ["dev"],
]


def clean_environment(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This process's environment without FILEQUEUE_* and AWS_* (so nothing leaks in), plus `extra`."""
    base = {name: value for name, value in os.environ.items() if not name.startswith(_INHERITED_PREFIXES)}
    return {**base, **extra}


def run_cli(
    *arguments: str, env: Mapping[str, str], stdin: str | None = None, timeout: float = 120, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli", *arguments],
        env=clean_environment(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    exports: dict[str, str]
    announcement: list[str]
    shell: list[str]
    """The lines the announcement says to paste into another shell: the exports and the `aws` function."""

    @property
    def shell_setup(self) -> str:
        return "\n".join(self.shell) + "\n"


@contextmanager
def running_dev(
    data_dir: Path, *, env: Mapping[str, str] = {}, stop_signal: int = signal.SIGINT, arguments: Sequence[str] = ()
) -> Iterator[DevProcess]:
    """`filequeue dev` until the block ends, then stopped with `stop_signal`; yields its parsed exports."""
    environment = clean_environment({"FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "1", **env})
    log_path = data_dir.parent / f"{data_dir.name}-dev.log"
    log = log_path.open("ab")
    with (
        log,
        subprocess.Popen(
            [sys.executable, "-m", "handlers.cli", "dev", "--data-dir", str(data_dir), "--processes", "1", *arguments],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO_ROOT,
            env=environment,
        ) as process,
    ):
        try:
            yield _read_announcement(process, log_path)
        finally:
            if process.poll() is None:
                process.send_signal(stop_signal)
                process.wait(timeout=90)


def _read_announcement(process: subprocess.Popen[str], log_path: Path) -> DevProcess:
    assert process.stdout is not None
    exports: dict[str, str] = {}
    lines, shell = [], []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if match := re.match(r"\s+export (\w+)=(.*)", line):
            [value] = shlex.split(match.group(2))
            exports[match.group(1)] = value
        if re.match(r"\s+(export |# |\w+\(\) \{)", line):
            shell.append(line.strip())
        if "Ctrl-C stops everything" in line:
            break
    assert "FILEQUEUE_DATABASE_URL" in exports, "\n".join([*lines, log_path.read_text(errors="replace")[-3000:]])
    return DevProcess(process, exports, lines, shell)


def wait_for(condition: object, *, timeout: float = 60, message: str = "") -> None:
    """Poll `condition()` until it is true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {message}")


def dev_client(dev: DevProcess, service: str) -> Any:
    """A boto3 client for `service` on the dev stack, configured from the exports it printed."""
    from handlers.develop.devstack import aws_client

    return aws_client(service, dev.exports)
