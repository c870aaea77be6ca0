"""Run untrusted parsing in a forked child with an address-space limit and a wall-clock timeout.

A PDF that loops forever or inflates into gigabytes must cost one record, not the process that
serves the whole batch. `multiprocessing` pools and queues need `/dev/shm`, which AWS Lambda
lacks, so this uses `os.fork` and a pipe: the child sends one pickled outcome back and leaves
with `os._exit`, so it never runs the parent's atexit handlers or flushes its buffers.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import logging
import os
import pickle
import resource
import selectors
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar, TypeVarTuple, cast

from handlers.errors import FileQueueError, PermanentError, TransientError
from handlers.stages.extract import extract_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from handlers.model import ExtractedText, ExtractLimits

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_VALUE = "value"
_ERROR = "error"
_MEMORY = "memory"
_CRASH = "crash"
_READ_SIZE = 1 << 16
EXTRACT_TIMEOUT = "extract_timeout"
# prctl(2) option: the signal the kernel sends this process when the thread that forked it ends.
_PR_SET_PDEATHSIG = 1
# pypdf logs one warning per repaired object; a hostile file yields thousands of lines.
_MAX_PYPDF_LOG_RECORDS = 20


def run_bounded(function: Callable[[*Ts], T], *args: *Ts, timeout_seconds: float, memory_mb: int) -> T:
    """Return `function(*args)` computed in a child process limited in time and address space.

    `memory_mb` caps the child's whole address space, including what it inherits from this
    process. A `FileQueueError` raised by `function` is raised again here; every other way the
    child can fail becomes a `PermanentError` (`extract_timeout`, `extract_memory`,
    `extract_crashed`).
    """
    _flush_standard_streams()  # otherwise the child would inherit, and could repeat, pending output
    read_fd, write_fd = os.pipe()
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_child(write_fd, memory_mb, parent_pid, lambda: function(*args))
    os.close(write_fd)
    try:
        payload = _read_until_closed(read_fd, time.monotonic() + timeout_seconds)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    if payload is None:
        _kill(pid)
        raise PermanentError(
            f"extraction stopped after {timeout_seconds:g} s (the file is too slow to parse)", code=EXTRACT_TIMEOUT
        )
    _, status = os.waitpid(pid, 0)
    return cast("T", _outcome(payload, status, memory_mb))


def extract_file(
    path: str,
    *,
    key: str,
    declared_content_type: str | None,
    limits: ExtractLimits,
    timeout_seconds: float,
    memory_mb: int,
    file_limit_seconds: float | None = None,
) -> ExtractedText:
    """`extract_text` of the file at `path`, bounded; the child reads the file, not this process.

    `file_limit_seconds` is the time any file may take; `timeout_seconds` may be shorter, clamped to
    what is left of the runtime's time. A file stopped by the clamp was not given its full limit: that
    is a TransientError (`deadline`, retried with fresh time), not a permanent `extract_timeout`.
    """
    limit = timeout_seconds if file_limit_seconds is None else file_limit_seconds
    if timeout_seconds <= 0:
        raise TransientError("no time left to extract before the write margin; retried", code="deadline")
    import_parsers_once()
    try:
        return run_bounded(
            _extract_path,
            path,
            key,
            declared_content_type,
            limits,
            timeout_seconds=timeout_seconds,
            memory_mb=memory_mb,
        )
    except PermanentError as error:
        if error.code == EXTRACT_TIMEOUT and timeout_seconds < limit:
            raise TransientError(
                f"extraction cut short after {timeout_seconds:.3g} s by the time left (the limit is {limit:g} s); "
                "retried",
                code="deadline",
            ) from error
        raise


@functools.cache
def import_parsers_once() -> None:
    """Import pypdf in this process, once, so that every forked child inherits it instead of importing it again.

    Called on the first extraction rather than at import time, so the Lambda entry stays light.
    The child's bounds are unchanged: its address-space limit counts what it inherits.
    """
    importlib.import_module("pypdf")
    importlib.import_module("pypdf.filters")  # loaded on the first stream a PDF decodes


def _extract_path(path: str, key: str, declared_content_type: str | None, limits: ExtractLimits) -> ExtractedText:
    _cap_pypdf_logging()
    data = Path(path).read_bytes()
    return extract_text(data, key=key, declared_content_type=declared_content_type, limits=limits)


def _cap_pypdf_logging() -> None:
    """Pass the first pypdf log records on and drop the flood (only ever called in the child)."""
    pypdf_logger = logging.getLogger("pypdf")
    pypdf_logger.addHandler(_FirstRecordsHandler(_MAX_PYPDF_LOG_RECORDS))
    pypdf_logger.propagate = False


class _FirstRecordsHandler(logging.Handler):
    """Forwards the first `limit` records to the root logger, as propagation would have."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._remaining = limit

    def emit(self, record: logging.LogRecord) -> None:
        if self._remaining > 0:
            self._remaining -= 1
            logging.getLogger().handle(record)


def _run_child(write_fd: int, memory_mb: int, parent_pid: int, call: Callable[[], object]) -> NoReturn:
    exit_code = 1
    try:
        # The parent's handlers (e.g. the worker's graceful shutdown) must not run in the child.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent(parent_pid)
        _limit_address_space(memory_mb)
        outcome = _call(call)
        try:
            payload = pickle.dumps(outcome)
        except Exception as error:  # noqa: BLE001  (an unpicklable result or error is reported, not lost)
            payload = pickle.dumps((_CRASH, f"result could not be sent back: {type(error).__name__}: {error}"))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        exit_code = 0
    finally:
        _flush_standard_streams()  # the child's own log lines; the parent flushed before forking
        os._exit(exit_code)


def _call(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return _VALUE, call()
    except FileQueueError as error:
        return _ERROR, error
    except MemoryError:
        return _MEMORY, None
    except BaseException as error:  # noqa: BLE001  (anything else is a crash of the parsing code)
        return _CRASH, f"{type(error).__name__}: {error}"


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this child when its parent dies, so a killed worker leaves no orphan parsing on.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere the wall-clock timeout is the only bound.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _limit_address_space(memory_mb: int) -> None:
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # an unprivileged process cannot raise its hard limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _read_until_closed(read_fd: int, deadline: float) -> bytes | None:
    """Everything the child writes, read as it comes so a large result cannot block the child.

    None if the deadline passes before the child closes its end of the pipe.
    """
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(read_fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not selector.select(remaining):
                continue
            chunk = os.read(read_fd, _READ_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _outcome(payload: bytes, status: int, memory_mb: int) -> object:
    try:
        kind, value = pickle.loads(payload) if payload else (None, None)  # noqa: S301  (our own child wrote it)
    except Exception:  # noqa: BLE001  (a child killed mid-write leaves a truncated payload)
        kind, value = None, None
    if kind == _VALUE:
        return value
    if kind == _ERROR and isinstance(value, FileQueueError):
        raise value
    if kind == _MEMORY:
        raise _memory_error(memory_mb)
    if kind == _CRASH:
        raise PermanentError(f"extraction crashed: {value}", code="extract_crashed")
    raise _died_error(status, memory_mb)


def _died_error(status: int, memory_mb: int) -> PermanentError:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGKILL:
            # Nobody here sent it (timeouts are handled before): the kernel's OOM killer did.
            return _memory_error(memory_mb, detail=" (killed by SIGKILL)")
        return PermanentError(f"extraction crashed: killed by signal {_signal_name(number)}", code="extract_crashed")
    return PermanentError(
        f"extraction crashed: the child exited with status {os.waitstatus_to_exitcode(status)} without a result",
        code="extract_crashed",
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _memory_error(memory_mb: int, detail: str = "") -> PermanentError:
    return PermanentError(f"extraction exceeded the memory limit of {memory_mb} MB{detail}", code="extract_memory")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
