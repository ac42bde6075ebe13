"""Run scenario files under either runtime, write their traces, check their expectations (CPython side).

    normalized = load("sim/scenarios/thermistor_open.json")      # validated, or ScenarioError
    run(normalized, "out.jsonl", "micropython")                  # the trace, as `tens-sim run --trace`
    results = check(normalized, open("out.jsonl"))               # sim.expect.Result per expectation

    jobs = plan(["sim/scenarios"], ("cpython", "micropython"), near_wrap=(False, True))
    outcomes = run_jobs(jobs, workers=2)                        # the library, both runtimes, both clocks

`variant(normalized, seed=..., near_wrap=...)` is the same scenario with another noise
seed or with the clock started 5 s before the 2^30 ms tick wrap (sim.clock.NEAR_WRAP_MS);
expectations are timed from the start of the run, so they hold unchanged. With
workers > 1 every run is its own process (a `micropython` one, or `python -m sim.runner`
for CPython), so the runs use every core; with one worker CPython runs in this process.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from sim import expect, launcher
from sim.clock import NEAR_WRAP_MS
from sim.scenario import ScenarioError, ScenarioRun, json_object, normalize

# CPU seconds per simulated second, measured over the library (sim/scenarios): used only to
# start the longest runs first.
COST_PER_SIM_S = {"cpython": 0.007, "micropython": 0.014}


def load(path):
    """Read and validate a scenario file; ScenarioError names the file and the problem."""
    try:
        with open(path) as handle:
            raw = json.load(handle, object_pairs_hook=json_object)  # a key given twice is a mistake
    except OSError as err:
        raise ScenarioError("%s: cannot read: %s" % (path, err.strerror))
    except RecursionError:
        raise ScenarioError("%s: JSON nested too deeply to read" % path)
    except ValueError as err:
        if "int_max_str_digits" in str(err):  # CPython's own limit, with advice meant for programmers
            raise ScenarioError("%s: a number has more than 4300 digits" % path)
        raise ScenarioError("%s: not valid JSON: %s" % (path, err))
    try:
        return normalize(raw)
    except RecursionError:
        raise ScenarioError("%s: nested too deeply to check" % path)
    except ScenarioError as err:
        raise ScenarioError("%s: %s" % (path, err))


def scenario_files(paths):
    """Scenario files named, folders expanded to their *.json files (sorted); ScenarioError for none."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path) if name.endswith(".json"))
            if not found:
                raise ScenarioError("%s: no scenario files (*.json) in this folder" % path)
            out.extend(found)
        else:
            out.append(path)
    return out


def variant(normalized, seed=None, near_wrap=False):
    """The same scenario with another seed and/or the clock starting 5 s before the tick wrap."""
    out = dict(normalized)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 0xFFFFFFFF:
            raise ScenarioError("seed must be an integer in 0..4294967295, got %r" % (seed,))
        out["seed"] = seed
    if near_wrap:
        out["start_ms"] = NEAR_WRAP_MS
    return out


# ---- child processes ------------------------------------------------------------------------------
# Runs in a VM or in worker processes are children of this process. A SIGTERM to it alone (a CI
# timeout, `kill`) must not leave them running on, still writing their TRACE.partial (a rerun to
# the same path would share it): `tens-sim run` calls stop_children() from its signal handler.
_children = set()
_children_lock = threading.Lock()
_stopping = threading.Event()


def _run_child(command, **popen_args):
    """subprocess.run(command, stderr=PIPE) that stop_children() can end from any thread;
    returns (exit status, stderr bytes). SimError once stopping: no new child starts."""
    if _stopping.is_set():
        raise launcher.SimError("not run: the runs were stopped")
    with subprocess.Popen(command, stderr=subprocess.PIPE, **popen_args) as process:
        with _children_lock:
            _children.add(process)
            stopped = _stopping.is_set()  # stop_children() ran after the check above: not this one's
        try:
            if stopped:
                process.kill()
            _, stderr = process.communicate()
        except BaseException:  # a signal handler raised in this thread: the child goes too
            process.kill()
            raise
        finally:
            with _children_lock:
                _children.discard(process)
    if _stopping.is_set():
        raise launcher.SimError("stopped: the run was ended by a signal")
    return process.returncode, stderr


def stop_children():
    """End every child run now (SIGKILL) and start no new one; safe from a signal handler."""
    with _children_lock:
        _stopping.set()
        running = list(_children)
    for process in running:
        try:
            process.kill()
        except OSError:
            pass  # it has just ended


def _run_form(normalized):
    """What the device side needs: the expectations stay on this side."""
    out = dict(normalized)
    out.pop("expect", None)
    return out


PARTIAL_SUFFIX = ".partial"


def trace_target(trace_path):
    """The file a run renames its TRACE.partial over: for a symbolic link the file it names
    (the link stays), and never anything but a regular file: a device, a pipe or a socket at
    the path would be replaced by the rename, not written to. SimError names the path."""
    path = os.path.realpath(trace_path) if os.path.islink(trace_path) else trace_path
    if os.path.exists(path) and not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "not a regular file (a device, a pipe or a socket)"
        raise launcher.SimError(
            "%s: cannot be a trace: it is %s, and a run writes %s%s and renames it over the path"
            % (trace_path, what, path, PARTIAL_SUFFIX)
        )
    return path


def write_error(path, what, err):
    """The SimError for an output that could not be written: its path, what it is, the OS's reason."""
    return launcher.SimError("%s: cannot write the %s: %s" % (path, what, getattr(err, "strerror", None) or err))


def _finish(trace_path):
    """A run writes TRACE.partial and renames it when it is complete: an interrupted or failed
    run never leaves a trace that looks whole, and never destroys the last complete one
    (the .partial file stays for a look at how far it got)."""
    os.replace(trace_path + PARTIAL_SUFFIX, trace_path)


def run_here(normalized, trace_path, attach=None):
    """Run under CPython in this process, writing the trace; returns the number of lines.

    `attach(board)`, if given, is a context manager held around the run (sim.pulses records
    every pulse this way).
    """
    count = 0
    trace_path = trace_target(trace_path)
    try:
        out = open(trace_path + PARTIAL_SUFFIX, "w", newline="\n")
    except OSError as err:
        raise write_error(trace_path, "trace", err)

    def emit(line):
        nonlocal count
        try:
            out.write(line)
            out.write("\n")
        except OSError as err:  # a full disk, a file size limit: the run stops here, named
            raise write_error(trace_path, "trace", err)
        count += 1

    try:
        scenario = ScenarioRun(_run_form(normalized), emit)
        if attach is None:
            scenario.run()
        else:
            with attach(scenario.board):
                scenario.run()
    finally:
        try:
            out.close()  # the last buffered lines reach the file here
        except OSError as err:
            closed_err = err
        else:
            closed_err = None
    if closed_err is not None:
        raise write_error(trace_path, "trace", closed_err)
    _finish(trace_path)
    return count


def run(normalized, trace_path, runtime="cpython"):
    """Run a normalized scenario; returns the number of trace lines written."""
    if runtime == "cpython":
        return run_here(normalized, trace_path)
    if runtime != "micropython":
        raise launcher.SimError("unknown runtime %r; choose one of %s" % (runtime, ", ".join(launcher.RUNTIMES)))
    trace_path = trace_target(trace_path)
    with tempfile.TemporaryDirectory() as tmp:
        norm_path = os.path.join(tmp, "scenario.json")
        with open(norm_path, "w") as handle:
            json.dump(_run_form(normalized), handle)
        with open(trace_path + PARTIAL_SUFFIX, "wb") as out:
            status, stderr = _run_child(
                launcher.micropython_command("run", norm_path), stdout=out, env=launcher.micropython_env()
            )
    if status != 0:
        detail = stderr.decode(errors="replace").strip()
        if not detail:  # e.g. killed by a file size limit: what it wrote is the clue
            detail = "no message from the VM; %s%s holds %d bytes (a full disk or a file size limit?)" % (
                trace_path, PARTIAL_SUFFIX, _size(trace_path + PARTIAL_SUFFIX))
        raise launcher.SimError("micropython run failed (exit %d):\n%s" % (status, detail))
    _finish(trace_path)
    with open(trace_path, "rb") as handle:
        return sum(1 for _ in handle)


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _run_cpython_process(normalized, trace_path):
    """A CPython run in its own process (`python -m sim.runner`): parallel runs use every core.
    The process runs from the project root, so a relative trace path is made absolute here."""
    trace_path = os.path.abspath(trace_path)
    with tempfile.TemporaryDirectory() as tmp:
        norm_path = os.path.join(tmp, "scenario.json")
        with open(norm_path, "w") as handle:
            json.dump(_run_form(normalized), handle)
        status, stderr = _run_child(
            [sys.executable, "-m", "sim.runner", norm_path, trace_path],
            stdout=subprocess.DEVNULL,
            cwd=launcher.project_root(),
        )
    if status != 0:
        raise launcher.SimError("cpython run failed (exit %d):\n%s" % (status, stderr.decode(errors="replace")[-3000:]))
    with open(trace_path, "rb") as handle:
        return sum(1 for _ in handle)


def check(normalized, lines):
    """Evaluate the scenario's expectations over its trace lines (an iterable of str)."""
    return expect.check(normalized, lines)


# ---- many runs ----------------------------------------------------------------------------------


class Job:
    """One run: a scenario file (or a normalized scenario with a label), a runtime, a clock start."""

    def __init__(self, path, runtime="cpython", near_wrap=False, seed=None, normalized=None, trace_path=None):
        self.path = path
        self.runtime = runtime
        self.near_wrap = near_wrap
        self.seed = seed
        self.normalized = normalized
        self.trace_path = trace_path  # None: a temporary file, removed after the check

    @property
    def label(self):
        return "%s [%s%s]" % (self.path, self.runtime, ", near wrap" if self.near_wrap else "")

    def scenario(self):
        base = self.normalized if self.normalized is not None else load(self.path)
        return variant(base, seed=self.seed, near_wrap=self.near_wrap)


class Outcome:
    def __init__(self, job):
        self.job = job
        self.results = []  # sim.expect.Result, one per expectation
        self.error = None  # the run or the load failed: its text
        self.lines = 0
        self.sim_s = 0.0
        self.wall_s = 0.0
        self.trace_path = job.trace_path

    @property
    def ok(self):
        return self.error is None and all(result.ok for result in self.results)

    def report(self):
        """One line per expectation (PASS/FAIL), prefixed by the run's label."""
        if self.error is not None:
            return ["ERROR %s: %s" % (self.job.label, self.error)]
        if not self.results:
            return ["PASS %s: ran (%d trace lines); it states no expectations" % (self.job.label, self.lines)]
        return ["%s %s: %s" % (line[:4], self.job.label, line[5:]) for line in (r.line() for r in self.results)]


def plan(paths, runtimes=("cpython",), near_wrap=(False,), seed=None, trace_dir=None):
    """Jobs for every scenario file (folders expanded) x runtime x clock start.

    trace_dir: keep each trace there as NAME.RUNTIME[.near-wrap].jsonl (else temporary)."""
    jobs = []
    for path in scenario_files(paths):
        for runtime in runtimes:
            for wrap in near_wrap:
                trace_path = None
                if trace_dir is not None:
                    stem = os.path.splitext(os.path.basename(path))[0]
                    trace_path = os.path.join(trace_dir, "%s.%s%s.jsonl" % (stem, runtime, ".near-wrap" if wrap else ""))
                jobs.append(Job(path, runtime, wrap, seed, trace_path=trace_path))
    return jobs


def run_job(job, in_process=True):
    """Load, run and check one job; never raises for a scenario's own problems (see Outcome.error)."""
    outcome = Outcome(job)
    temporary = None
    try:
        normalized = job.scenario()
        outcome.sim_s = normalized["duration_ms"] / 1000.0
        if outcome.trace_path is None:
            handle, temporary = tempfile.mkstemp(suffix=".jsonl", prefix="tens-sim-")
            os.close(handle)
            outcome.trace_path = temporary
        started = time.monotonic()
        if job.runtime == "cpython" and not in_process:
            outcome.lines = _run_cpython_process(normalized, outcome.trace_path)
        else:
            outcome.lines = run(normalized, outcome.trace_path, job.runtime)
        outcome.wall_s = time.monotonic() - started
        with open(outcome.trace_path) as handle:
            outcome.results = check(normalized, handle)
    except (ScenarioError, launcher.SimError, expect.ExpectError, OSError) as err:
        outcome.error = str(err)
    finally:
        if temporary is not None:
            os.unlink(temporary)
            outcome.trace_path = None
    return outcome


def _cost(job):
    try:
        normalized = job.normalized if job.normalized is not None else load(job.path)
    except ScenarioError:
        return 0
    return normalized["duration_ms"] * COST_PER_SIM_S.get(job.runtime, 0.02)


def run_jobs(jobs, workers=1, on_done=None):
    """Run every job (longest first when workers > 1); Outcomes in the jobs' order.
    on_done(outcome) is called as each finishes (from the calling thread)."""
    if workers <= 1 or len(jobs) <= 1:
        outcomes = []
        for job in jobs:
            outcome = run_job(job, in_process=True)
            if on_done is not None:
                on_done(outcome)
            outcomes.append(outcome)
        return outcomes
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))
    outcomes = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {}
        for i in order:
            futures[pool.submit(run_job, jobs[i], False)] = i
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes[futures[future]] = outcome
                if on_done is not None:
                    on_done(outcome)
    return outcomes


def _main(argv):
    """python -m sim.runner NORMALIZED.json TRACE: one CPython run (run_jobs's worker process)."""
    if len(argv) != 3:
        sys.stderr.write("usage: python -m sim.runner NORMALIZED.json TRACE.jsonl\n")
        return 2
    with open(argv[1]) as handle:
        normalized = json.load(handle)
    try:
        run(normalized, argv[2], "cpython")
    except (launcher.SimError, ScenarioError) as err:
        sys.stderr.write("%s\n" % err)  # the parent shows it: one line, not a traceback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
