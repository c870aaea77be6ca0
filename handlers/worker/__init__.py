"""The EKS runtime: a long-poll loop that feeds the Lambda handler, in one or several processes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers.settings import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings, *, processes: int | None = None) -> int:
    """Run `handlers.batch.handle_batch` on the queue until SIGTERM/SIGINT; returns the exit code.

    `processes`: worker processes (None: `settings.worker_processes`; 0: one per CPU).
    """
    from handlers.batch import handle_batch
    from handlers.wiring import check_ready
    from handlers.worker.compaction_leader import compaction_leader
    from handlers.worker.supervisor import serve

    with compaction_leader(settings):
        return serve(settings, handle_batch, check_ready, processes=processes)
