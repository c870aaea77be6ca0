"""`/healthz` without a server: a worker loop past its alive-until time makes the worker unhealthy."""

from __future__ import annotations

from handlers.worker.health import LivenessBoard


def test_liveness_fails_when_any_loop_is_past_its_alive_until_time():
    now = [100.0]
    slots = [150.0, 120.0]
    board = LivenessBoard(slots, clock=lambda: now[0])

    assert board.probe() == (True, "ok")
    now[0] = 130.0
    ok, reason = board.probe()
    assert not ok
    assert "[1]" in reason
