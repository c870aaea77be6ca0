"""Run untrusted parsing in a forked child with an address-space limit and a wall-clock timeout.

A PDF that loops forever or inflates into gigabytes must cost one record, not the process that
serves the whole batch. `multiprocessing` pools and queues need `/dev/shm`, which AWS Lambda
lacks, so this uses `os.fork` and two pipes. The child is long-lived (one per process): it imports
the parsers once and serves file after file, so a file costs neither a fork nor an import. It is
replaced after a timeout, a crash, a memory error and every `MAX_CALLS_PER_CHILD` files. It leaves
with `os._exit`, so it never runs the parent's atexit handlers or flushes its buffers.

The child leads a process group of its own: the OCR engine it starts (`handlers.adapters.ocr`) inherits
its address-space limit and its group, and a timeout kills the whole group, so no engine runs on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import resource
import selectors
import signal
import struct
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar, TypeVarTuple, cast

from handlers.errors import ErrorCode, FileQueueError, PermanentError, TransientError
from handlers.stages.extract import Ocr, extract_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from handlers.model import ExtractedText, ExtractLimits, OcrOptions

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_VALUE = "value"
_ERROR = "error"
_MEMORY = "memory"
_CRASH = "crash"
_READ_SIZE = 1 << 16
_FRAME_HEADER = struct.Struct("!Q")
# Like gunicorn's max_requests or Celery's max_tasks_per_child: a bound on what one parser process
# can accumulate (fragmented heap, caches) across files.
MAX_CALLS_PER_CHILD = 200
# prctl(2) option: the signal the kernel sends this process when the thread that forked it ends.
_PR_SET_PDEATHSIG = 1
# pypdf logs one warning per repaired object; a hostile file yields thousands of lines.
_MAX_PYPDF_LOG_RECORDS = 20
# The logger the runtimes configure to write JSON lines (Powertools' `Logger(service="filequeue")`): pypdf's
# records leave through its handlers, so they are JSON lines like every other line of the log stream.
_SERVICE_LOGGER = "filequeue"


class BoundedChild(Generic[*Ts, T]):
    """A forked child that computes `function(*args)` call after call, each call bounded in time.

    `memory_mb` caps the child's whole address space, including what it inherits from this
    process. A `FileQueueError` raised by `function` is raised again here; every other way a call
    can fail becomes a `PermanentError` (`extract_timeout`, `extract_memory`, `extract_crashed`)
    and the child is replaced. A memory error or crash in a child that already served other calls
    is tried once more in a fresh child, so what earlier calls left behind never decides a verdict.

    Calls may come from several threads: the long-lived child serves one at a time, and a call that
    finds it busy gets a child of its own for that call.
    """

    def __init__(self, function: Callable[[*Ts], T], *, memory_mb: int, max_calls: int = MAX_CALLS_PER_CHILD) -> None:
        self.memory_mb = memory_mb
        self._function = function
        self._max_calls = max_calls
        self._process: _ChildProcess | None = None
        self._busy = threading.Lock()

    def call(self, *args: *Ts, timeout_seconds: float) -> T:
        if not self._busy.acquire(blocking=False):
            return self._call_in_own_child(args, timeout_seconds)
        try:
            return self._call_long_lived(args, timeout_seconds)
        finally:
            self._busy.release()

    def close(self) -> None:
        """End the child (it would also end by itself when this process closes its pipe or dies)."""
        with self._busy:
            self._close()

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def _call_long_lived(self, args: tuple[*Ts], timeout_seconds: float) -> T:
        process = self._ready_process()
        try:
            return cast("T", process.call(args, timeout_seconds))
        except PermanentError as error:
            if not process.ended:
                raise  # the function's own verdict, from a child that lives on
            if error.code == ErrorCode.EXTRACT_TIMEOUT or process.calls_served == 1:
                raise
        return cast("T", self._ready_process().call(args, timeout_seconds))

    def _call_in_own_child(self, args: tuple[*Ts], timeout_seconds: float) -> T:
        process = _ChildProcess.start(self._function, self.memory_mb)
        try:
            return cast("T", process.call(args, timeout_seconds))
        finally:
            process.stop()

    def _close(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def _ready_process(self) -> _ChildProcess:
        process = self._process
        if process is not None and (
            process.ended or process.owner != os.getpid() or process.calls_served >= self._max_calls
        ):
            self._close()
            process = None
        if process is None:
            process = self._process = _ChildProcess.start(self._function, self.memory_mb)
        return process


class _ChildProcess:
    """The parent's end of one child: its pid and two pipes, requests in and outcomes out."""

    def __init__(self, pid: int, requests: int, outcomes: int, memory_mb: int) -> None:
        self.pid = pid
        self.owner = os.getpid()
        self.calls_served = 0
        self.ended = False
        self._requests = requests
        self._outcomes = outcomes
        self._memory_mb = memory_mb

    @classmethod
    def start(cls, function: Callable[..., object], memory_mb: int) -> _ChildProcess:
        _flush_standard_streams()  # otherwise the child would inherit, and could repeat, pending output
        request_read, request_write = os.pipe()
        outcome_read, outcome_write = os.pipe()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(request_write)
            os.close(outcome_read)
            _serve(request_read, outcome_write, memory_mb, parent_pid, function)
        os.close(request_read)
        os.close(outcome_write)
        return cls(pid, request_write, outcome_read, memory_mb)

    def call(self, args: tuple[object, ...], timeout_seconds: float) -> object:
        self.calls_served += 1
        try:
            _write_frame(self._requests, pickle.dumps(args))
            payload = _read_frame(self._outcomes, time.monotonic() + timeout_seconds)
        except BrokenPipeError:
            payload = b""  # the child is gone; its exit status says how
        except BaseException:
            self.stop()
            raise
        if payload is None:
            self.stop()
            raise PermanentError(
                f"extraction stopped after {timeout_seconds:g} s (the file is too slow to parse)",
                code=ErrorCode.EXTRACT_TIMEOUT,
            )
        kind, value = _decode(payload)
        if kind == _VALUE:
            return value
        if kind == _ERROR and isinstance(value, FileQueueError):
            raise value
        status = self.stop()
        if kind == _MEMORY:
            raise _memory_error(self._memory_mb)
        if kind == _CRASH:
            raise PermanentError(f"extraction crashed: {value}", code=ErrorCode.EXTRACT_CRASHED)
        raise _died_error(status, self._memory_mb)

    def stop(self) -> int:
        """Kill the child if it still runs; its exit status (0 if it was already reaped)."""
        if self.ended:
            # Its descriptor numbers may already belong to other files (a new child's pipes, a socket).
            return 0
        self.ended = True
        for descriptor in (self._requests, self._outcomes):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the child and the engine it may be running
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # a child killed before it made its group
        with contextlib.suppress(ChildProcessError):
            return os.waitpid(self.pid, 0)[1]
        return 0


def extract_file(
    path: str,
    *,
    key: str,
    declared_content_type: str | None,
    limits: ExtractLimits,
    timeout_seconds: float,
    memory_mb: int,
    whole_limit: bool = True,
    ocr: OcrOptions | None = None,
) -> ExtractedText:
    """`extract_text` of the file at `path`, bounded; the child reads the file, not this process.

    With `ocr`, pages and images without text are read by Tesseract, within the same time and memory bounds.

    `whole_limit` says whose fault running past `timeout_seconds` is, as the record's budget decided when
    it gave this time: the file's (its whole extraction limit: `extract_timeout`, permanent) or the
    runtime's (a shorter time, what was left: `deadline`, retried with fresh time).
    """
    if timeout_seconds <= 0:
        raise TransientError("no time left to extract before the write margin; retried", code=ErrorCode.DEADLINE)
    try:
        return _extraction_child(memory_mb).call(
            path, key, declared_content_type, limits, ocr, timeout_seconds=timeout_seconds
        )
    except PermanentError as error:
        if error.code == ErrorCode.EXTRACT_TIMEOUT and not whole_limit:
            raise TransientError(
                f"extraction cut short after {timeout_seconds:.3g} s, all the time the runtime had left "
                "(less than the file's extraction limit); retried",
                code=ErrorCode.DEADLINE,
            ) from error
        raise


_ExtractionChild = BoundedChild[str, str, str | None, "ExtractLimits", "OcrOptions | None", "ExtractedText"]
_extraction_children: dict[int, _ExtractionChild] = {}
_extraction_children_lock = threading.Lock()


def _extraction_child(memory_mb: int) -> _ExtractionChild:
    with _extraction_children_lock:
        child = _extraction_children.get(memory_mb)
        if child is None:
            child = _extraction_children[memory_mb] = BoundedChild(_extract_path, memory_mb=memory_mb)
        return child


def _extract_path(
    path: str, key: str, declared_content_type: str | None, limits: ExtractLimits, ocr: OcrOptions | None
) -> ExtractedText:
    from handlers.adapters.ocr import tesseract_reader

    _cap_pypdf_logging()
    data = Path(path).read_bytes()
    reader = None if ocr is None else Ocr(ocr, tesseract_reader(ocr))
    return extract_text(data, key=key, declared_content_type=declared_content_type, limits=limits, ocr=reader)


def _cap_pypdf_logging() -> None:
    """Pass each file's first pypdf log records to the service logger and drop the flood (only in the child)."""
    pypdf_logger = logging.getLogger("pypdf")
    cap = next((handler for handler in pypdf_logger.handlers if isinstance(handler, _FirstRecordsHandler)), None)
    if cap is None:
        cap = _FirstRecordsHandler()
        pypdf_logger.addHandler(cap)
        pypdf_logger.propagate = False
    cap.remaining = _MAX_PYPDF_LOG_RECORDS


class _FirstRecordsHandler(logging.Handler):
    """Forwards records to the service logger's (JSON) handlers while `remaining` lasts."""

    remaining = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.remaining > 0:
            self.remaining -= 1
            logging.getLogger(_SERVICE_LOGGER).handle(record)


def _serve(requests: int, outcomes: int, memory_mb: int, parent_pid: int, function: Callable[..., object]) -> NoReturn:
    """The child's loop: one outcome per request until the parent closes the pipe or a call breaks the child."""
    exit_code = 1
    try:
        # The parent's handlers (e.g. the worker's graceful shutdown) must not run in the child.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setpgid(0, 0)  # its own group, which a timeout kills whole (the module docstring)
        _die_with_parent(parent_pid)
        _limit_address_space(memory_mb)
        while request := _read_frame(requests, deadline=None):
            args = pickle.loads(request)  # noqa: S301  (our own parent wrote it)
            outcome = _call(lambda: function(*args))  # noqa: B023  (called before the next request)
            try:
                payload = pickle.dumps(outcome)
            except Exception as error:  # noqa: BLE001  (an unpicklable result or error is reported, not lost)
                outcome = (_CRASH, f"result could not be sent back: {type(error).__name__}: {error}")
                payload = pickle.dumps(outcome)
            _flush_standard_streams()  # the call's own log lines, before the parent reads on
            _write_frame(outcomes, payload)
            if outcome[0] in (_MEMORY, _CRASH):
                break  # a child that ran out of memory or crashed is not trusted with the next file
        exit_code = 0
    finally:
        _flush_standard_streams()
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


def _write_frame(descriptor: int, payload: bytes) -> None:
    data = memoryview(_FRAME_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(descriptor, data) :]


def _read_frame(descriptor: int, deadline: float | None) -> bytes | None:
    """One length-prefixed frame, read as it comes so a large outcome cannot block the writer.

    b"" when the other end closed the pipe before a whole frame; None when the deadline passes first.
    """
    buffer = bytearray()
    expected = _FRAME_HEADER.size
    header_read = False
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while len(buffer) < expected:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if not selector.select(remaining):
                continue
            chunk = os.read(descriptor, min(_READ_SIZE, expected - len(buffer)))
            if not chunk:
                return b""
            buffer += chunk
            if not header_read and len(buffer) == expected:
                header_read = True
                expected += _FRAME_HEADER.unpack(buffer)[0]
    return bytes(buffer[_FRAME_HEADER.size :])


def _decode(payload: bytes) -> tuple[str | None, object]:
    try:
        return cast("tuple[str, object]", pickle.loads(payload)) if payload else (None, None)  # noqa: S301  (our own child wrote it)
    except Exception:  # noqa: BLE001  (a child killed mid-write leaves a truncated payload)
        return None, None


def _died_error(status: int, memory_mb: int) -> PermanentError:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGKILL:
            # Nobody here sent it (timeouts are handled before): the kernel's OOM killer did.
            return _memory_error(memory_mb, detail=" (killed by SIGKILL)")
        return PermanentError(
            f"extraction crashed: killed by signal {_signal_name(number)}", code=ErrorCode.EXTRACT_CRASHED
        )
    return PermanentError(
        f"extraction crashed: the child exited with status {os.waitstatus_to_exitcode(status)} without a result",
        code=ErrorCode.EXTRACT_CRASHED,
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _memory_error(memory_mb: int, detail: str = "") -> PermanentError:
    return PermanentError(
        f"extraction exceeded the memory limit of {memory_mb} MB{detail}", code=ErrorCode.EXTRACT_MEMORY
    )


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
