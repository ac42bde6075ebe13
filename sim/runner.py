"""Run a scenario file under either runtime and write its trace (CPython side)."""

import json
import os
import subprocess
import tempfile

from sim import launcher
from sim.scenario import ScenarioError, ScenarioRun, normalize


def load(path):
    """Read and validate a scenario file; ScenarioError names the file and the problem."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except OSError as err:
        raise ScenarioError("%s: cannot read: %s" % (path, err.strerror))
    except ValueError as err:
        raise ScenarioError("%s: not valid JSON: %s" % (path, err))
    try:
        return normalize(raw)
    except ScenarioError as err:
        raise ScenarioError("%s: %s" % (path, err))


def run(normalized, trace_path, runtime="cpython"):
    """Run a normalized scenario; returns the number of trace lines written."""
    if runtime == "cpython":
        count = 0
        with open(trace_path, "w", newline="\n") as out:

            def emit(line):
                nonlocal count
                out.write(line)
                out.write("\n")
                count += 1

            ScenarioRun(normalized, emit).run()
        return count
    if runtime != "micropython":
        raise launcher.SimError("unknown runtime %r; choose one of %s" % (runtime, ", ".join(launcher.RUNTIMES)))
    with tempfile.TemporaryDirectory() as tmp:
        norm_path = os.path.join(tmp, "scenario.json")
        with open(norm_path, "w") as handle:
            json.dump(normalized, handle)
        with open(trace_path, "wb") as out:
            result = subprocess.run(
                launcher.micropython_command("run", norm_path),
                stdout=out,
                stderr=subprocess.PIPE,
                env=launcher.micropython_env(),
            )
    if result.returncode != 0:
        raise launcher.SimError(
            "micropython run failed (exit %d):\n%s" % (result.returncode, result.stderr.decode(errors="replace"))
        )
    with open(trace_path, "rb") as handle:
        return sum(1 for _ in handle)
