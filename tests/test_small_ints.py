"""A quiet tick makes no int the board would box and no float (tests/smallint_probe.py).

The VM's heap count (`make bench`, heap per steady tick) runs on a 64-bit build, where ints
up to 2^62 are small; on the RP2040 anything from 2^30 up is a heap object. The probe
checks every arithmetic result the firmware makes in a quiet tick of every scenario in
sim/scenarios/, run with the clock 5 s before the tick wrap."""

import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from tests import smallint_probe as sp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_instrumented(source, probe, in_tick=True):
    """Compile source with the probe's rewrite, run it with `probe` as the check; its globals."""
    tree = sp._Instrument("sample").visit(ast.parse(source))
    ast.fix_missing_locations(tree)
    names = {sp.CHECK_NAME: probe.check}
    probe.in_tick = in_tick
    try:
        exec(compile(tree, "sample", "exec"), names)
    finally:
        probe.in_tick = False
    return names


def test_the_rewrite_reports_large_ints_and_floats_with_their_line():
    probe = sp._Probe()
    _run_instrumented("a = 40000\nb = a * a\nc = -(1 << 30)\nd = a / 7\ne = 1 << 29\nf = not a\n", probe)
    sites = [(line, kind) for _, line, kind, _ in probe.tick_sites]
    assert sites == [(2, "int"), (3, "int"), (4, "float")]
    assert probe.tick_sites[0][3] == 1600000000


def test_augmented_assignments_are_checked_and_stay_in_place():
    probe = sp._Probe()
    names = _run_instrumented(
        "class Box:\n    n = 0\nbox = Box()\nbuf = bytearray(b'ab')\nalias = buf\n"
        "box.n += 1073741823\nbox.n += 1\nbuf += b'cd'\nitems = [5]\nitems[0] -= 0.5\n",
        probe,
    )
    # 2^30 - 1 is still small; one more is not
    assert [(line, kind) for _, line, kind, _ in probe.tick_sites] == [(7, "int"), (10, "float")]
    assert names["alias"] is names["buf"] and names["alias"] == bytearray(b"abcd")


def test_only_quiet_ticks_count_and_nothing_outside_a_tick():
    probe = sp._Probe()
    _run_instrumented("x = 3 << 40\n", probe, in_tick=False)
    assert probe.tick_sites == []
    _run_instrumented("x = 3 << 40\n", probe)
    probe.end_tick(quiet=False)  # a tick with a request or a reply allocates anyway
    assert probe.quiet_sites == {} and probe.loud_ticks == 1
    _run_instrumented("x = 3 << 40\n", probe)
    probe.end_tick(quiet=True)
    assert list(probe.quiet_sites) == [("sample", 1, "int")] and probe.quiet_ticks == 1


@pytest.mark.timeout(300)
def test_no_quiet_tick_of_any_scenario_makes_a_boxed_int_or_a_float():
    scenarios = sorted(glob.glob(os.path.join(ROOT, "sim", "scenarios", "*.json")))
    assert len(scenarios) >= 20
    result = subprocess.run(
        [sys.executable, "-m", "tests.smallint_probe"] + scenarios,
        cwd=ROOT, capture_output=True, text=True, timeout=280,
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed_expectations"] == []  # the rewritten firmware behaves as the plain one
    assert report["quiet_ticks"] > 400000 and report["checked"] > 50 * report["quiet_ticks"]
    assert report["sites"] == [], "\n".join(
        "%(module)s line %(line)d: %(kind)s %(value)s in %(count)d quiet ticks (first in %(scenario)s)" % site
        for site in report["sites"]
    )
