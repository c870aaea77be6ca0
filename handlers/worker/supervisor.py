"""Run the poll loop in this process, or in N spawned worker processes under a supervising parent.

CPU-bound extraction needs processes, not threads, to use every core of a pod. The parent owns
the signals, the health server and the aggregated metrics; it restarts a child that dies (with
backoff, so a crashing child cannot spin), forwards SIGTERM on shutdown and waits up to the grace
period before it kills a child that is still busy.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from handlers.errors import ConfigError
from handlers.worker.backoff import Backoff
from handlers.worker.poll_loop import EXIT_CONFIG
from handlers.worker.shutdown import StopSignal, install_signal_handlers

if TYPE_CHECKING:
    from collections.abc import Callable, MutableSequence
    from multiprocessing.context import SpawnProcess

    from handlers.settings import Settings
    from handlers.worker.health import HealthServer, Probe, Startup
    from handlers.worker.metrics import WorkerMetrics
    from handlers.worker.poll_loop import BatchHandler, PollLoop

logger = Logger(service="filequeue")

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
STARTUP_BUDGET_SECONDS = 120.0
"""How long a new child may take to import, connect and start polling before /healthz fails."""
STABLE_AFTER_SECONDS = 60.0
SHUTDOWN_SLACK_SECONDS = 5.0
CHECKS_POLL_SECONDS = 0.1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(
    settings: Settings,
    handler: BatchHandler,
    check_ready: Callable[[], None],
    *,
    processes: int | None = None,
) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the exit code.

    Configuration that would fail every record raises ConfigError before the first receive. A database
    that refuses or times out is waited for (`FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS`) with the health
    server up, saying "starting".
    """
    count = worker_count(settings.worker_processes if processes is None else processes)
    if count == 1:
        check_configuration(settings, count)
        return _run_in_process(settings, handler, check_ready)
    return _run_supervised(settings, handler, check_ready, count)


def check_configuration(settings: Settings, processes: int) -> None:
    """The start-up checks that need no database (limits, queue, visibility), cheapest first; raises ConfigError."""
    from handlers.worker.poll_loop import LoopOptions
    from handlers.worker.sqs import make_sqs_client
    from handlers.worker.startup import check_limits, check_queue

    check_limits(settings, processes)
    options = LoopOptions.from_settings(settings)
    sqs = make_sqs_client(settings.worker_wait_time_seconds)
    queue = check_queue(sqs, options.queue_url)
    visibility = options.visibility_timeout_seconds or queue.visibility_timeout_seconds
    problem = options.visibility_problem(visibility)
    if problem is not None:
        raise ConfigError(problem)


def _await_database(settings: Settings, check_ready: Callable[[], None], stop: StopSignal, startup: Startup) -> bool:
    """Wait for a usable database (raises ConfigError if it never is); False if a stop came first."""
    from handlers.worker.startup import wait_for_database

    ready = wait_for_database(
        check_ready, wait_seconds=settings.worker_database_wait_seconds, stop=stop, waiting=startup.waiting
    )
    if ready:
        startup.finish()
    return ready


def _startup_budget(settings: Settings) -> float:
    """How long a starting worker counts as alive: its own start plus the longest database wait."""
    return STARTUP_BUDGET_SECONDS + settings.worker_database_wait_seconds


def worker_count(requested: int) -> int:
    """`requested` if positive, else one per CPU the container may use."""
    if requested < 0:
        raise ConfigError("the number of worker processes must be >= 0 (0 means one per CPU)")
    return requested or available_cpus()


def available_cpus(cgroup_file: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a pod's CPU limit)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cgroup_file.read_text().split()
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


def _run_in_process(settings: Settings, handler: BatchHandler, check_ready: Callable[[], None]) -> int:
    from prometheus_client import CollectorRegistry

    from handlers.worker.health import LivenessBoard, Startup
    from handlers.worker.metrics import WorkerMetrics

    stop = StopSignal()
    restore_signals = install_signal_handlers(stop)
    registry = CollectorRegistry()
    alive_until = [time.monotonic() + _startup_budget(settings)]

    def beat(until: float) -> None:
        alive_until[0] = until

    startup = Startup()
    server = _start_health(settings, stop, check_ready, LivenessBoard(alive_until).probe, registry, startup=startup)
    try:
        if not _await_database(settings, check_ready, stop, startup):
            return 0
        return _build_loop(settings, handler, stop, WorkerMetrics(registry), beat).run()
    finally:
        if server is not None:
            server.stop()
        restore_signals()


def _run_supervised(settings: Settings, handler: BatchHandler, check_ready: Callable[[], None], count: int) -> int:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from handlers.worker.health import LivenessBoard, Startup

    # Children inherit the variable when spawned and write their samples there; a fresh directory per
    # run keeps a previous run's files (same emptyDir, restarted container) out of the counts.
    metrics_dir = tempfile.mkdtemp(prefix="filequeue-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    context = multiprocessing.get_context("spawn")
    slots = context.Array("d", [time.monotonic() + _startup_budget(settings)] * count, lock=False)
    checks_passed = context.Event()
    stop = StopSignal()
    restore_signals = install_signal_handlers(stop)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    supervisor = Supervisor(
        lambda index: context.Process(
            target=child_main,
            args=(ChildSpec(settings, handler, index, slots, checks_passed),),
            name=f"filequeue-worker-{index}",
        ),
        count,
        stop=stop,
        grace_seconds=settings.worker_shutdown_grace_seconds,
        liveness=slots,
        on_exit=lambda pid: _mark_dead(pid, metrics_dir),
    )
    server = None
    startup = Startup()
    try:
        # The children start (import, build their clients) while the checks run here, and wait for
        # them to pass before their first receive: a bad configuration costs no receive.
        supervisor.start_children()
        check_configuration(settings, count)
        server = _start_health(settings, stop, check_ready, LivenessBoard(slots).probe, registry, startup=startup)
        if not _await_database(settings, check_ready, stop, startup):
            supervisor.stop_children()
            return 0
        checks_passed.set()
        return supervisor.run()
    except ConfigError:
        stop.request("configuration_error")
        supervisor.stop_children()
        raise
    finally:
        if server is not None:
            server.stop()
        restore_signals()
        shutil.rmtree(metrics_dir, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a spawned worker needs; pickled, so the handler must be a module-level function."""

    settings: Settings
    handler: BatchHandler
    index: int
    liveness: Any
    """The shared `multiprocessing.Array('d')` of alive-until times, one slot per child."""
    checks_passed: Any
    """A `multiprocessing.Event` the parent sets once its start-up checks passed."""


def child_main(spec: ChildSpec) -> None:
    """Entry point of a spawned worker process: it polls once the parent's start-up checks passed."""
    from handlers.worker.metrics import WorkerMetrics

    stop = StopSignal()
    install_signal_handlers(stop)

    def beat(until: float) -> None:
        spec.liveness[spec.index] = until

    loop = _build_loop(spec.settings, spec.handler, stop, WorkerMetrics(registry=None), beat)
    while not spec.checks_passed.wait(CHECKS_POLL_SECONDS):
        if stop.is_set():
            sys.exit(0)
    sys.exit(loop.run())


def _build_loop(
    settings: Settings,
    handler: BatchHandler,
    stop: StopSignal,
    metrics: WorkerMetrics,
    liveness: Callable[[float], None],
) -> PollLoop:
    from handlers.worker.poll_loop import LoopOptions, PollLoop
    from handlers.worker.sqs import make_sqs_client

    sqs = make_sqs_client(settings.worker_wait_time_seconds)
    return PollLoop(sqs, handler, LoopOptions.from_settings(settings), stop=stop, metrics=metrics, liveness=liveness)


def _start_health(
    settings: Settings,
    stop: StopSignal,
    check_ready: Callable[[], None],
    liveness: Probe,
    registry: Any,
    *,
    startup: Startup,
) -> HealthServer | None:
    if settings.health_port == 0:
        return None
    from handlers.worker.health import HealthServer, ReadinessProbe
    from handlers.worker.sqs import make_sqs_client

    sqs = make_sqs_client(settings.worker_wait_time_seconds)
    readiness = ReadinessProbe(check_ready, sqs, settings.require_queue(), stop)
    try:
        server = HealthServer(
            settings.health_port,
            liveness=startup.guard(liveness, alive=True),
            readiness=startup.guard(readiness.probe, alive=False),
            registry=registry,
        )
    except OSError as error:
        raise ConfigError(f"FILEQUEUE_HEALTH_PORT {settings.health_port} cannot be served: {error.strerror}") from None
    server.start()
    return server


def _mark_dead(pid: int, metrics_dir: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]


class Supervisor:
    """Keeps `count` children running until a stop is requested, then stops them within the grace period."""

    def __init__(
        self,
        spawn: Callable[[int], SpawnProcess],
        count: int,
        *,
        stop: StopSignal,
        grace_seconds: float,
        liveness: MutableSequence[float],
        on_exit: Callable[[int], None] = lambda _pid: None,
        restart_backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spawn = spawn
        self._count = count
        self._stop = stop
        self._grace = grace_seconds
        self._liveness = liveness
        self._on_exit = on_exit
        self._template = restart_backoff or Backoff(base_seconds=1.0, cap_seconds=30.0)
        self._clock = clock
        self._children: list[SpawnProcess | None] = [None] * count
        self._started_at = [0.0] * count
        self._restart_at = [0.0] * count
        self._backoffs = [Backoff(self._template.base_seconds, self._template.cap_seconds) for _ in range(count)]
        self._config_failed = False

    def start_children(self) -> None:
        """Start every child now (run() would start them on its first turn)."""
        self._start_due()

    def stop_children(self) -> None:
        """Stop the children started so far, within the grace period."""
        self._shutdown()

    def run(self) -> int:
        logger.info("supervisor_started", extra={"processes": self._count})
        while not self._stop.is_set():
            self._reap()
            if self._stop.is_set():
                break
            self._start_due()
            sentinels = [child.sentinel for child in self._children if child is not None]
            wait(sentinels, timeout=1.0)
        return self._shutdown()

    def _reap(self) -> None:
        for index, child in enumerate(self._children):
            if child is None or child.is_alive():
                continue
            child.join()
            if child.exitcode == EXIT_CONFIG:
                # Every restart would fail the same way and spend more receives: stop the whole worker.
                logger.error("worker_configuration_error", extra={"slot": index, "pid": child.pid})
                self._config_failed = True
                self._stop.request("configuration_error")
            lived = self._clock() - self._started_at[index]
            backoff = self._backoffs[index]
            if lived >= STABLE_AFTER_SECONDS:
                backoff.reset()
            delay = max(1.0, backoff.next_delay())
            logger.warning(
                "worker_exited",
                extra={
                    "slot": index,
                    "pid": child.pid,
                    "exit_code": child.exitcode,
                    "restart_in_seconds": round(delay, 3),
                },
            )
            if child.pid is not None:
                self._on_exit(child.pid)
            self._children[index] = None
            self._restart_at[index] = self._clock() + delay
            self._liveness[index] = self._restart_at[index] + STARTUP_BUDGET_SECONDS

    def _start_due(self) -> None:
        now = self._clock()
        for index, child in enumerate(self._children):
            if child is None and now >= self._restart_at[index]:
                self._liveness[index] = now + STARTUP_BUDGET_SECONDS
                process = self._spawn(index)
                process.start()
                self._children[index] = process
                self._started_at[index] = now
                logger.info("worker_started_process", extra={"slot": index, "pid": process.pid})

    def _shutdown(self) -> int:
        running = [child for child in self._children if child is not None]
        logger.info("supervisor_stopping", extra={"reason": self._stop.reason, "processes": len(running)})
        for child in running:
            if child.is_alive():
                child.terminate()
        deadline = self._clock() + self._grace + SHUTDOWN_SLACK_SECONDS
        for child in running:
            child.join(max(0.0, deadline - self._clock()))
        killed = [child for child in running if child.is_alive()]
        for child in killed:
            logger.error("worker_killed_after_grace", extra={"pid": child.pid, "grace_seconds": self._grace})
            child.kill()
            child.join()
        codes = [child.exitcode for child in running]
        logger.info("supervisor_stopped", extra={"exit_codes": codes})
        if self._config_failed:
            return EXIT_CONFIG
        return 0 if not killed and all(code == 0 for code in codes) else 1
