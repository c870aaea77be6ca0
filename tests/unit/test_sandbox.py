"""The bounded child: every way a call ends maps to a value or a specific error; the child is reused or replaced."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from handlers.adapters.sandbox import BoundedChild, extract_file
from handlers.budget import ExtractionTime, RecordBudget
from handlers.errors import ErrorCode, PermanentError, TransientError
from handlers.model import ExtractLimits
from tests.paths import PDF_FIXTURES, REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable

GENEROUS_MEMORY_MB = 4096


def current_address_space_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("VmSize missing from /proc/self/status")


def bounded(
    function: Callable[..., Any], *args: Any, timeout_seconds: float = 30, memory_mb: int = GENEROUS_MEMORY_MB
) -> Any:
    child = BoundedChild(function, memory_mb=memory_mb)
    try:
        return child.call(*args, timeout_seconds=timeout_seconds)
    finally:
        child.close()


def error_of(function: Callable[..., Any], *args: Any, **limits: Any) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        bounded(function, *args, **limits)
    return caught.value


def raise_transient(message: str) -> None:
    raise TransientError(message, code=ErrorCode.S3_UNAVAILABLE)


def raise_permanent() -> None:
    raise PermanentError("PDF is encrypted with a password", code=ErrorCode.ENCRYPTED_PDF)


def raise_value_error() -> None:
    raise ValueError("unexpected byte 0x00")


def loop_forever_after_recording_pid(pid_file: Path) -> None:
    pid_file.write_text(str(os.getpid()))
    while True:
        pass


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def kill_self(signal_number: int) -> None:
    faulthandler.disable()  # in the child only: pytest's handler would print a traceback on SIGSEGV
    os.kill(os.getpid(), signal_number)


def exit_without_result() -> None:
    os._exit(3)


def unpicklable_result() -> object:
    return lambda: None


def test_a_bounded_call_returns_the_value():
    assert bounded(pow, 2, 10) == 1024


def test_a_bounded_call_returns_a_result_larger_than_the_pipe_buffer():
    assert bounded(str.__mul__, "x", 5_000_000) == "x" * 5_000_000


def test_a_bounded_call_reraises_file_queue_errors_with_their_code():
    with pytest.raises(TransientError) as caught:
        bounded(raise_transient, "slow down")
    assert caught.value.code == ErrorCode.S3_UNAVAILABLE
    assert str(caught.value) == "slow down"


def test_a_bounded_call_reraises_permanent_errors_unchanged():
    error = error_of(raise_permanent)
    assert error.code == "encrypted_pdf"
    assert str(error) == "PDF is encrypted with a password"


def test_a_bounded_call_stops_a_child_that_never_ends(tmp_path):
    pid_file = tmp_path / "child.pid"

    error = error_of(loop_forever_after_recording_pid, pid_file, timeout_seconds=1)

    assert error.code == "extract_timeout"
    assert "1 s" in str(error)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left as a zombie
        os.kill(int(pid_file.read_text()), 0)


def test_a_bounded_call_enforces_the_memory_limit():
    limit_mb = current_address_space_mb() + 256
    assert bounded(allocate, 64, memory_mb=limit_mb) == 64 * 1024 * 1024  # within the limit: fine

    error = error_of(allocate, 4096, memory_mb=limit_mb)

    assert error.code == "extract_memory"
    assert f"{limit_mb} MB" in str(error)


def test_a_bounded_call_reports_a_sigkill_as_out_of_memory():
    assert error_of(kill_self, signal.SIGKILL).code == "extract_memory"


def test_a_bounded_call_names_the_signal_of_a_crash():
    error = error_of(kill_self, signal.SIGSEGV)
    assert error.code == "extract_crashed"
    assert "SIGSEGV" in str(error)


def test_a_bounded_call_reports_unexpected_exceptions_as_crashes():
    error = error_of(raise_value_error)
    assert error.code == "extract_crashed"
    assert "ValueError: unexpected byte 0x00" in str(error)


def test_a_bounded_call_reports_a_child_that_exits_without_a_result():
    error = error_of(exit_without_result)
    assert error.code == "extract_crashed"
    assert "status 3" in str(error)


def test_a_bounded_call_reports_an_unpicklable_result():
    error = error_of(unpicklable_result)
    assert error.code == "extract_crashed"
    assert "could not be sent back" in str(error)


def test_a_bounded_call_child_runs_no_atexit_handler_and_repeats_no_output():
    script = textwrap.dedent(
        """
        import atexit, sys
        from handlers.adapters.sandbox import BoundedChild
        atexit.register(lambda: print("atexit ran"))
        sys.stdout.write("pending output;")  # still in the buffer when the child is forked
        print(BoundedChild(len, memory_mb=4096).call("abc", timeout_seconds=30))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout == "pending output;3\natexit ran\n"


def test_extract_file_reads_and_extracts_in_the_child(tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes("# Notes\n\nCafé".encode("utf-16"))

    extracted = extract_file(
        str(path),
        key="notes.md",
        declared_content_type=None,
        limits=ExtractLimits(),
        timeout_seconds=30,
        memory_mb=GENEROUS_MEMORY_MB,
    )

    assert extracted.content_type == "text/markdown"
    assert extracted.title == "Notes"
    assert extracted.text == "# Notes\n\nCafé"


def test_extract_file_of_a_missing_file_is_a_crash(tmp_path):
    with pytest.raises(PermanentError) as caught:
        extract_file(
            str(tmp_path / "gone"),
            key="gone.txt",
            declared_content_type=None,
            limits=ExtractLimits(),
            timeout_seconds=30,
            memory_mb=GENEROUS_MEMORY_MB,
        )
    assert caught.value.code == "extract_crashed"
    assert "FileNotFoundError" in str(caught.value)


def test_one_extraction_child_serves_file_after_file_and_only_it_imports_pypdf(tmp_path):
    """No fork and no import per file: the same child answers, and the parent stays light."""
    probe = (
        "import sys\n"
        "from handlers.adapters import sandbox\n"
        "from handlers.model import ExtractLimits\n"
        "pids = set()\n"
        "for name in ('a.txt', 'b.md', 'c.txt'):\n"
        f"    sandbox.extract_file({str(tmp_path / 'note.txt')!r}, key=name, declared_content_type=None,"
        " limits=ExtractLimits(), timeout_seconds=30, memory_mb=2048)\n"
        "    pids.add(sandbox._extraction_child(2048).pid)\n"
        "print(len(pids), 'pypdf' in sys.modules)\n"
    )
    (tmp_path / "note.txt").write_text("a short note\n")
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False
    )
    assert result.stdout.split() == ["1", "False"], result.stderr


def record_pid(_: object = None) -> int:
    return os.getpid()


_LEAKED: list[bytearray] = []  # in the child: outlives the call on purpose


def leak(megabytes: int) -> int:
    _LEAKED.append(bytearray(megabytes * 1024 * 1024))
    return os.getpid()


def test_a_child_serves_calls_until_its_quota_then_is_replaced():
    child = BoundedChild(record_pid, memory_mb=GENEROUS_MEMORY_MB, max_calls=3)
    try:
        pids = [child.call(None, timeout_seconds=30) for _ in range(7)]
    finally:
        child.close()
    assert [len(set(pids[start : start + 3])) for start in (0, 3, 6)] == [1, 1, 1]
    assert len(set(pids)) == 3


def test_a_child_lives_on_after_the_functions_own_error_and_is_replaced_after_a_crash():
    child = BoundedChild(raise_or_record_pid, memory_mb=GENEROUS_MEMORY_MB)
    try:
        first = child.call("pid", timeout_seconds=30)
        with pytest.raises(PermanentError) as verdict:
            child.call("permanent", timeout_seconds=30)
        assert verdict.value.code == "encrypted_pdf"
        assert child.call("pid", timeout_seconds=30) == first

        with pytest.raises(PermanentError) as crashed:
            child.call("crash", timeout_seconds=30)
        assert crashed.value.code == "extract_crashed"
        after_crash = child.call("pid", timeout_seconds=30)
        assert after_crash != first
    finally:
        child.close()


def raise_or_record_pid(what: str) -> int:
    if what == "permanent":
        raise_permanent()
    if what == "crash":
        raise_value_error()
    return os.getpid()


def test_after_a_timeout_the_next_call_gets_a_fresh_child(tmp_path):
    child = BoundedChild(sleep_then_record_pid, memory_mb=GENEROUS_MEMORY_MB)
    try:
        first = child.call(0, timeout_seconds=30)
        with pytest.raises(PermanentError) as caught:
            child.call(600, timeout_seconds=0.5)
        assert caught.value.code == "extract_timeout"
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)  # killed and reaped
        assert child.call(0, timeout_seconds=30) not in (first, None)
    finally:
        child.close()


def test_a_child_stopped_by_a_timeout_never_closes_the_descriptors_opened_after_it():
    # Given a child stopped by a timeout, whose pipe descriptors are free again
    child = BoundedChild(sleep_then_record_pid, memory_mb=GENEROUS_MEMORY_MB)
    with pytest.raises(PermanentError):
        child.call(600, timeout_seconds=0.5)
    # and a pipe opened afterwards, which takes the lowest free numbers: the ones the child's pipes had
    read_end, write_end = os.pipe()
    try:
        # When the next call replaces the stopped child (and it is closed at the end)
        assert child.call(0, timeout_seconds=30) > 0
        child.close()

        # Then the pipe opened in between is still open
        assert os.write(write_end, b"still open") == len(b"still open")
    finally:
        child.close()
        os.close(read_end)
        os.close(write_end)


def sleep_then_record_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_memory_error_in_a_reused_child_is_decided_again_in_a_fresh_one():
    """What earlier calls left behind must not make a file fail that fits in the limit on its own."""
    limit_mb = current_address_space_mb() + 400
    child = BoundedChild(leak, memory_mb=limit_mb)
    try:
        first = child.call(250, timeout_seconds=30)  # leaves 250 MB behind in the child
        second = child.call(250, timeout_seconds=30)  # too much beside the leak; fits in a fresh child
        assert second != first

        with pytest.raises(PermanentError) as caught:
            child.call(1024, timeout_seconds=30)  # fails in a fresh child too: that verdict stands
        assert caught.value.code == "extract_memory"
    finally:
        child.close()


def test_a_child_ends_when_its_parent_closes_the_pipe():
    child = BoundedChild(record_pid, memory_mb=GENEROUS_MEMORY_MB)
    pid = child.call(None, timeout_seconds=30)
    child.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_extraction_child_dies_with_its_parent(tmp_path):
    # Given a process running a bounded call that never ends, with a long timeout
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from handlers.adapters.sandbox import BoundedChild
        from tests.unit.test_sandbox import loop_forever_after_recording_pid
        child = BoundedChild(loop_forever_after_recording_pid, memory_mb=4096)
        child.call(Path({str(pid_file)!r}), timeout_seconds=600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())

        # When the parent is killed (SIGKILL: no cleanup code of its own runs)
        parent.kill()
        parent.wait(timeout=30)

        # Then the kernel kills the child too: no orphan goes on parsing without a limit
        deadline = time.monotonic() + 10
        while process_alive(child):
            assert time.monotonic() < deadline, f"child {child} outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        if pid_file.exists() and pid_file.read_text() and process_alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the orphan a failing run would leave behind


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_timeout_the_budget_cut_short_is_transient_and_one_of_the_whole_limit_is_permanent(tmp_path):
    # A path that never ends being read: a FIFO nobody writes to
    fifo = tmp_path / "never.txt"
    os.mkfifo(fifo)
    budget = RecordBudget(work_deadline=100.0, extract_limit_seconds=0.5)

    def extract_never(allowed: ExtractionTime) -> None:
        extract_file(
            str(fifo),
            key="never.txt",
            declared_content_type=None,
            limits=ExtractLimits(),
            memory_mb=4096,
            timeout_seconds=allowed.seconds,
            whole_limit=allowed.whole_limit,
        )

    # With 0.4 s left of the budget the file is cut short by the runtime, not by its own limit
    with pytest.raises(TransientError) as cut_short:
        extract_never(budget.extraction(now=99.6))
    assert cut_short.value.code == "deadline"

    # With time to spare it has its whole limit, and needing longer is the file's own verdict
    with pytest.raises(PermanentError) as too_slow:
        extract_never(budget.extraction(now=10.0))
    assert too_slow.value.code == "extract_timeout"


def test_calls_from_two_threads_at_once_each_get_their_own_answer():
    child = BoundedChild(sleep_then_record_pid, memory_mb=GENEROUS_MEMORY_MB)
    answers: dict[str, int] = {}

    def call(name: str) -> None:
        answers[name] = child.call(0.5, timeout_seconds=30)

    try:
        threads = [threading.Thread(target=call, args=(name,)) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # One call had the long-lived child, the other, finding it busy, a child of its own
        assert len(set(answers.values())) == 2
        assert child.pid in answers.values()
    finally:
        child.close()


def test_a_child_started_by_a_thread_that_ended_is_replaced_without_an_error():
    """The kernel kills a child when the thread that forked it ends (PR_SET_PDEATHSIG)."""
    child = BoundedChild(record_pid, memory_mb=GENEROUS_MEMORY_MB)
    first: list[int] = []
    try:
        starter = threading.Thread(target=lambda: first.append(child.call(None, timeout_seconds=30)))
        starter.start()
        starter.join()
        # join() returns before the kernel has ended the thread: wait for the signal to land
        deadline = time.monotonic() + 10
        while process_alive(first[0]):
            assert time.monotonic() < deadline, "the child outlived the thread that forked it"
            time.sleep(0.01)

        assert child.call(None, timeout_seconds=30) not in (first[0], None)
    finally:
        child.close()


def test_pypdf_warnings_and_python_warnings_are_json_lines_of_the_log_stream(tmp_path):
    # (psycopg's pool warnings too: a database that refuses connections makes it log them)
    # Given a PDF with junk before its header and no end-of-file marker (pypdf warns about both)
    good = (PDF_FIXTURES / "pdfjs-issue16221-hello-world.pdf").read_bytes()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"junk before the header\n" + good.replace(b"%%EOF", b""))
    probe = (
        "import warnings\n"
        "import handlers.batch\n"
        "from handlers.adapters import sandbox\n"
        "from handlers.errors import PermanentError\n"
        "from handlers.model import ExtractLimits\n"
        "try:\n"
        f"    sandbox.extract_file({str(broken)!r}, key='broken.pdf', declared_content_type=None,"
        " limits=ExtractLimits(), timeout_seconds=60, memory_mb=2048)\n"
        "except PermanentError:\n"
        "    pass\n"
        "warnings.warn('a library is deprecated', DeprecationWarning, stacklevel=1)\n"
        "import logging\n"
        "logging.getLogger('psycopg.pool').warning('error connecting in pool-1')\n"
    )

    # When a process that runs the handler extracts it (pypdf gives up on it: corrupt), and a library warns
    completed = subprocess.run(
        [sys.executable, "-W", "always", "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )

    # Then every line it wrote, on either stream, is a JSON object, pypdf's and the warning's included
    lines = [line for line in (completed.stdout + completed.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    messages = " ".join(str(record.get("message")) for record in records)
    assert "invalid pdf header" in messages.lower()
    assert "EOF marker not found" in messages
    assert "a library is deprecated" in messages
    assert "error connecting in pool-1" in messages
