"""Run scenarios with per-tick audit lines under either runtime and check them (CPython side).

A block is what one scenario run writes: its trace lines ('{...}', one per 100 ms)
and its audit lines ('[...]', one per tick, sim.audit), interleaved in run order.
`check_block` feeds the audit records to the shared invariant checker
(tests/fw/invariants.py, the one the in-process harness uses) and checks every
trace row for pulses outside the envelope.
"""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from firmware import limits as L
from sim import launcher
from sim.scenario import ScenarioRun
from tests.fw.invariants import InvariantChecker

MP_TIMEOUT_S = 600


def cpython_block(normalized):
    lines = []
    ScenarioRun(normalized, lines.append, lines.append).run()
    return lines


def micropython_blocks(normalized_list):
    """Run every scenario in one `micropython sim/mp_main.py runmany` process; one block each."""
    text = "".join(json.dumps(n) + "\n" for n in normalized_list)
    proc = subprocess.run(
        launcher.micropython_command("runmany"),
        input=text,
        capture_output=True,
        text=True,
        env=launcher.micropython_env(),
        cwd=launcher.project_root(),
        timeout=MP_TIMEOUT_S,
    )
    assert proc.returncode == 0, "micropython runmany failed (%d):\n%s" % (proc.returncode, proc.stderr[-3000:])
    blocks = []
    current = []
    for line in proc.stdout.split("\n"):
        if line == "END":
            blocks.append(current)
            current = []
        elif line:
            current.append(line)
    assert not current, "output after the last END: %r" % current[:3]
    assert len(blocks) == len(normalized_list), "%d blocks for %d scenarios\n%s" % (
        len(blocks), len(normalized_list), proc.stderr[-2000:])
    return blocks


def micropython_blocks_in_background(normalized_list):
    """Start `micropython_blocks` in a thread (the VM runs while CPython works); `.result()` waits."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(micropython_blocks, normalized_list)
    pool.shutdown(wait=False)
    return future


def check_trace_row(row, where=""):
    """No pulse outside the envelope in a 100 ms trace row, and no output outside RUNNING."""
    for i, ch in enumerate(row["ch"]):
        what = "%s ch %d: %s" % (where, i, ch)
        assert ch["net_charge_nc"] == 0, "net charge in a trace row: " + what
        assert 0 <= ch["max_phase_charge_nc"] <= L.PHASE_CHARGE_LIMIT_NC, "phase charge above the limit: " + what
        assert 0 <= ch["amp_ua"] <= L.AMP_LIMIT_UA and 0 <= ch["target_ua"] <= L.AMP_LIMIT_UA, what
        assert ch["delivered_ua"] <= L.AMP_LIMIT_UA + L.OVERCURRENT_MARGIN_UA or "overcurrent:%d" % i in row["sim_faults"], what
        if row["state"] != "RUNNING":
            assert ch["amp_ua"] == 0, "amplitude outside RUNNING: " + what
    assert (row["state"] == "FAULT") == bool(row["faults"]), where


def check_block(lines, channels, label=""):
    """Check one run's block; returns (ticks, pulses, trace rows) seen."""
    assert lines, "empty block " + label
    assert not lines[0].startswith("ERROR"), "%s: the run raised: %s" % (label, lines[0])
    checker = InvariantChecker(channels)
    rows = 0
    for number, line in enumerate(lines):
        assert not line.startswith("ERROR"), "%s: the run raised: %s" % (label, line)
        if line.startswith("["):
            try:
                checker.step(json.loads(line))
            except AssertionError as err:
                raise AssertionError("%s, audit line %d: %s" % (label, number + 1, err)) from None
        else:
            row = json.loads(line)
            check_trace_row(row, "%s t=%s" % (label, row["t_s"]))
            rows += 1
    return checker.ticks, checker.pulses, rows
