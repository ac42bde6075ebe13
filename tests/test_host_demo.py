"""`make demo` (python -m host.demo): a short session that must end cleanly, on a non-terminal too."""

import io
import subprocess
import sys
import time

import pytest
from rich.console import Console

from host import demo


def test_demo_module_exits_0_with_a_summary_when_stdout_is_not_a_terminal():
    result = subprocess.run([sys.executable, "-m", "host.demo"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "session summary" in out
    assert "peak amplitude  15.0 mA" in out
    assert "faults  none" in out
    assert "IDLE, output 0.0 mA" in out
    assert "\x1b[" not in out, "no terminal escapes in a CI log"
    ramping_down = [line for line in out.splitlines() if "] ramping down " in line]
    assert ramping_down and "of target 0.0 mA" in ramping_down[0], out  # the stop's target, not the one before


def test_demo_session_under_micropython_reaches_15_ma_and_stops():
    buffer = io.StringIO()
    console = Console(file=buffer, width=100, force_terminal=False)
    session = demo.run("micropython", speed=50, console=console)
    assert session.peak_ua == demo.TOP_UA == 15000
    assert session.step == session.steps == 30
    assert session.faults_seen == []
    assert session.status["state"] == "IDLE" and session.status["ch"][0]["amp_ua"] == 0
    assert session.stopped_ms >= 30 * demo.STEP_EVERY_MS // 2 + demo.HOLD_MS
    assert "micropython runtime" in buffer.getvalue()


def _slow_host_once(monkeypatch, at_step, action):
    """Run `action(session)` once, at the first poll after the plan reaches at_step."""
    done = []
    poll = demo.Session.poll

    def poll_then_act(session):
        poll(session)
        if not done and session.step >= at_step:
            done.append(True)
            action(session)
            poll(session)

    monkeypatch.setattr(demo.Session, "poll", poll_then_act)


def test_demo_resumes_after_its_lease_ran_out_and_counts_it(monkeypatch):
    """A loaded machine can leave the host silent for longer than the lease (in simulated
    time, a short stall at high speed): the device pauses; the demo resumes and finishes."""
    monkeypatch.setattr(demo, "WALL_LIMIT_S", 20.0)
    monkeypatch.setattr(demo.L, "LEASE_MAX_MS", 500)  # the shortest lease the device takes
    _slow_host_once(monkeypatch, 4, lambda session: time.sleep(0.5))  # 10 s simulated at x20
    buffer = io.StringIO()
    session = demo.run("cpython", speed=20, console=Console(file=buffer, width=100, force_terminal=False))
    assert session.lease_pauses >= 1
    assert session.peak_ua == demo.TOP_UA
    assert session.status["state"] == "IDLE" and session.faults_seen == []
    assert "lease pauses" in buffer.getvalue()


def test_demo_stops_at_once_with_the_reason_when_paused_by_anything_else(monkeypatch):
    monkeypatch.setattr(demo, "WALL_LIMIT_S", 20.0)
    _slow_host_once(monkeypatch, 3, lambda session: session.client.pause())
    started = time.monotonic()
    with pytest.raises(demo.DemoError, match=r"went PAUSED \(\w+\) during the ramping phase"):
        demo.run("cpython", speed=20, console=Console(file=io.StringIO(), force_terminal=False))
    assert time.monotonic() - started < 10
