"""`make demo` (python -m host.demo): a short session that must end cleanly, on a non-terminal too."""

import io
import subprocess
import sys

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
