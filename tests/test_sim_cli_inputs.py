"""Bad input to `tens-sim` is one clear error line naming the limit, a non-zero exit, no traceback,
and nothing lost: every output path is checked before any output file is opened.

The serve checks run `tens-sim serve` as a process with a timeout: a value that slipped
through would start serving (and never exit) instead of failing.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner

from host.client import Client
from host.transport import open_port
from sim import launcher, plot
from sim.cli import cli
from sim.launcher import SimError, start_server, start_servers
from sim.runner import run as run_scenario
from sim.scenario import normalize
from tests.test_sim_inject import tens_sim_command

SERVE_TIMEOUT_S = 20  # a refused option exits at once; one that is not refused serves until killed
SHORT = {"duration_s": 1, "steps": [{"at_s": 0.1, "send": {"op": "hello"}}]}


def serve_error(*args):
    """(exit status, stderr) of `tens-sim serve ARGS` that must refuse its options at once."""
    try:
        result = subprocess.run(tens_sim_command() + ["serve", "--listen", "127.0.0.1:0"] + list(args),
                                capture_output=True, text=True, timeout=SERVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail("tens-sim serve %s was not refused: it served until killed" % " ".join(args))
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr


def error_line(output):
    """The one 'Error: ...' line of a click error (usage lines above it aside)."""
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


def write_scenario(path, scenario=SHORT):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scenario))
    return path


# ---- serve: --speed ---------------------------------------------------------------


@pytest.mark.parametrize("runtime, speed, says", [
    ("micropython", "0.0004", "outside 0.001..10000"),  # was 0 permille in the VM: flat out
    ("micropython", "nan", "finite"),  # was a ValueError traceback
    ("micropython", "inf", "finite"),  # was an OverflowError traceback
    ("cpython", "nan", "finite"),  # was served, "speed nan"
    ("cpython", "20000", "outside 0.001..10000"),
])
def test_serve_refuses_a_speed_it_cannot_pace(runtime, speed, says):
    status, stderr = serve_error("--runtime", runtime, "--speed", speed)
    assert status == 2
    assert "--speed" in error_line(stderr) and says in error_line(stderr)


def test_check_speed_keeps_zero_and_the_documented_range():
    assert launcher.check_speed(0) == 0.0
    assert launcher.check_speed("2.5") == 2.5
    assert launcher.check_speed(launcher.SPEED_MIN) == launcher.SPEED_MIN
    assert launcher.check_speed(launcher.SPEED_MAX) == launcher.SPEED_MAX
    for bad in (float("nan"), float("inf"), -1, 0.0009, 10000.5, "fast"):
        with pytest.raises(SimError, match="--speed"):
            launcher.check_speed(bad)


def test_the_vm_gets_the_speed_to_a_millionth(monkeypatch):
    """0.0015 reached the VM as 2 thousandths (a third too fast); now as 1500 millionths."""
    seen = []

    class Stop(Exception):
        pass

    def command(*args):
        seen.append(args)
        raise Stop()

    monkeypatch.setattr(launcher, "micropython_command", command)
    with pytest.raises(Stop):
        start_server(runtime="micropython", speed=0.0015, pty=False, listen="127.0.0.1:0", control=None)
    assert seen[0][:2] == ("serve", 1500)


@pytest.mark.micropython
def test_the_vm_paces_at_the_speed_asked():
    """The VM reads the speed in millionths: at 2x, about 2 simulated s per wall s (not flat out)."""
    import time

    with start_server(runtime="micropython", speed=2, pty=False, listen="127.0.0.1:0") as server:
        first = server.control({})["elapsed_ms"]
        time.sleep(1.5)
        elapsed = server.control({})["elapsed_ms"] - first
    assert 1500 <= elapsed <= 4500, elapsed


# ---- serve: --device-id -------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_serve_refuses_a_device_id_it_cannot_carry(runtime):
    status, stderr = serve_error("--runtime", runtime, "--device-id", "x" * 256)  # killed the VM: uncaught NLR
    assert status == 2 and "256 characters" in error_line(stderr) and "at most 64" in error_line(stderr)
    status, stderr = serve_error("--runtime", runtime, "--device-id", "")  # was replaced by the default
    assert status == 2 and "must not be empty" in error_line(stderr)
    status, stderr = serve_error("--runtime", runtime, "--device-id", "bad\nid")
    assert status == 2 and "'\\n' is not allowed" in error_line(stderr)


def test_device_id_checks_in_the_launcher():
    for bad, says in (("", "empty"), ("a b", "' ' is not allowed"), ("caf\u00e9", "not allowed"),
                      ("x" * 65, "at most 64")):
        with pytest.raises(SimError, match=says):
            start_servers(1, pty=False, listen="127.0.0.1:0", device_id=bad)
        with pytest.raises(SimError, match=says):
            start_server(pty=False, listen="127.0.0.1:0", device_id=bad)
    with pytest.raises(SimError, match="'%s-10', 65 characters long; at most 64" % ("x" * 62)):
        start_servers(11, pty=False, listen="127.0.0.1:0", device_id="x" * 62)
    assert launcher.device_ids(1, "") == [""]  # no silent default: start_servers refuses it


@pytest.mark.micropython
def test_the_longest_device_id_reaches_the_host_from_the_vm():
    longest = "!" + "~" * 62 + '"'  # the edges of the allowed characters; the quote is escaped on the wire
    with start_server(runtime="micropython", speed=5, pty=True, device_id=longest) as server:
        transport = open_port(server.url)
        try:
            assert Client(transport, timeout_s=5.0, retries=2).hello()["device_id"] == longest
        finally:
            transport.close()


# ---- serve: --listen and --seed ----------------------------------------------------


@pytest.mark.parametrize("listen", ["127.0.0.1:70000", "127.0.0.1:-5"])
def test_serve_refuses_a_listen_port_out_of_range(listen):
    status, stderr = serve_error("--listen", listen)  # the later --listen wins
    assert status == 2 and listen in error_line(stderr) and "outside 0..65535" in error_line(stderr)
    with pytest.raises(SimError, match="outside 0..65535"):
        start_servers(1, pty=False, listen=listen)


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_serve_seed_has_the_range_of_run(seed):
    status, stderr = serve_error("--seed", seed)
    assert status == 2 and "0<=x<=4294967295" in error_line(stderr)


def test_the_last_device_seed_must_fit_too():
    with pytest.raises(SimError, match="device 1 the seed 4294967296, past 4294967295"):
        start_servers(2, pty=False, listen="127.0.0.1:0", seed=0xFFFFFFFF)


@pytest.mark.parametrize("args, says", [
    (["--listen", "127.0.0.1"], "--listen takes HOST:PORT or PORT, got '127.0.0.1'"),
    (["--control", "garbage"], "--control: a control address is HOST:PORT or PORT, got 'garbage'"),
    (["--control", "127.0.0.1:65535", "--devices", "2"], "--control 127.0.0.1:65535: port 65536 is past 65535"),
    (["--seed", "4294967295", "--devices", "2"], "device 1 the seed 4294967296, past 4294967295"),
])
def test_every_serve_option_error_exits_2(args, says):
    """2 is a usage error, as click gives for --devices 0; 1 stays for a device that failed."""
    status, stderr = serve_error(*args)
    assert status == 2 and says in error_line(stderr)


# ---- serve: stopping ----------------------------------------------------------------------------


def start_serve(tmp_path, *args):
    env = dict(os.environ, TENS_SIM_RUN_DIR=str(tmp_path / "run"))
    env.pop("TENSCTL_PORT", None)
    return subprocess.Popen(tens_sim_command() + ["serve"] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def read_line(stream, wait_s=SERVE_TIMEOUT_S):
    """The next line of `stream` without its newline ('' at its end), or a failure after wait_s."""
    lines = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(wait_s)
    assert lines, "no line within %g s" % wait_s
    return lines[0].rstrip("\n")


def stop(process):
    if process.poll() is None:
        process.kill()
    process.communicate()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_stops_at_once_and_its_port_can_be_served_again(tmp_path):
    """It took 2 s to stop at a slow speed, holding its port: a restart found it in use."""
    listen = "127.0.0.1:%d" % free_port()
    first = start_serve(tmp_path, "--listen", listen, "--speed", "0.001")
    second = None
    try:
        assert read_line(first.stdout) == "socket://" + listen
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=SERVE_TIMEOUT_S) == 0
        assert time.monotonic() - signalled < 1.0
        second = start_serve(tmp_path, "--listen", listen)
        assert read_line(second.stdout) == "socket://" + listen, second.stderr.read()
    finally:
        stop(first)
        if second is not None:
            stop(second)


def children(pid):
    """The ids of the processes whose parent is `pid` (from /proc)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rpartition(")")[2].split()  # after "PID (COMMAND)": state, parent, ...
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


@pytest.mark.micropython
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the VM processes in /proc")
def test_a_killed_vm_is_reported_with_its_signal(tmp_path):
    """The error ended in "stopped:" with nothing after it when the VM wrote nothing to stderr."""
    serve = start_serve(tmp_path, "--listen", "127.0.0.1:0", "--devices", "2", "--runtime", "micropython")
    try:
        assert [read_line(serve.stdout) for _ in range(2)][1].startswith("socket://")
        for pid in children(serve.pid):
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                if b"pulsewarm-sim-0\0" in handle.read():
                    os.kill(pid, signal.SIGKILL)
        assert serve.wait(timeout=SERVE_TIMEOUT_S) == 1
        assert error_line(serve.stderr.read()) == (
            "Error: the simulated device pulsewarm-sim-0 stopped (killed by SIGKILL); "
            "the MicroPython VM wrote nothing to stderr"
        )
    finally:
        stop(serve)


def test_a_cpython_device_whose_simulator_fails_stops_and_says_why():
    """The tick thread died and serve went on serving a device that never answered."""
    with start_server(runtime="cpython", speed=50, pty=True) as server:
        def broken_step(incoming):
            raise RuntimeError("thermal model out of range")

        server.served.step = broken_step
        deadline = time.monotonic() + 5
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.alive()
        message = server.stopped_message()
        assert message.startswith("the simulated device pulsewarm-sim-0 stopped:\n"), message
        assert "RuntimeError: thermal model out of range" in message


# ---- run: output paths ---------------------------------------------------------


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_a_bad_pulses_path_leaves_the_trace_file_alone(tmp_path):
    scenario = write_scenario(tmp_path / "s.json")
    keep = tmp_path / "keep.jsonl"
    keep.write_text("an earlier trace\n")
    result = invoke("run", scenario, "--trace", keep, "--pulses", tmp_path / "missing" / "p.jsonl")
    assert result.exit_code == 2
    assert "--pulses" in error_line(result.output) and "does not exist" in error_line(result.output)
    assert keep.read_text() == "an earlier trace\n"  # was truncated to 0 bytes
    result = invoke("run", scenario, "--trace", tmp_path / "missing" / "t.jsonl", "--check")
    assert result.exit_code == 2 and "--trace" in error_line(result.output)


def test_pulses_under_the_vm_is_a_usage_error(tmp_path):
    """It exited 1, which CI reads as a failed expectation, though nothing ran."""
    scenario = write_scenario(tmp_path / "s.json")
    result = invoke("run", scenario, "--runtime", "micropython", "--trace", tmp_path / "t.jsonl",
                    "--pulses", tmp_path / "p.jsonl")
    assert result.exit_code == 2
    assert "--pulses records on the cpython runtime only" in error_line(result.output)
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


@pytest.mark.parametrize("option", ["--trace", "--pulses"])
def test_an_empty_output_path_is_refused(tmp_path, option):
    """--pulses '' ran and recorded nothing; --trace '' was taken for a missing --trace."""
    scenario = write_scenario(tmp_path / "s.json")
    result = invoke("run", scenario, "--trace", tmp_path / "t.jsonl", option, "")
    assert result.exit_code == 2
    assert "'%s': the path is empty" % option in error_line(result.output)
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a /proc folder to fail creating a file in")
@pytest.mark.parametrize("option", ["--trace", "--pulses"])
def test_an_output_that_cannot_be_created_is_one_usage_line(tmp_path, option):
    """/proc passes os.access as root: the run failed later with a raw errno (--trace) or a traceback."""
    scenario = write_scenario(tmp_path / "s.json")
    paths = {"--trace": tmp_path / "t.jsonl", "--pulses": tmp_path / "p.jsonl"}
    paths[option] = "/proc/pulsewarm-test-%d.jsonl" % os.getpid()
    result = invoke("run", scenario, "--trace", paths["--trace"], "--pulses", paths["--pulses"])
    assert result.exit_code == 2, result.output
    assert "%s %s: " % (option, paths[option]) in error_line(result.output)
    assert "Errno" not in result.output and "ERROR" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_outputs_never_overwrite_each_other_or_the_scenario(tmp_path):
    scenario = write_scenario(tmp_path / "s.json")
    result = invoke("run", scenario, "--trace", scenario)
    assert result.exit_code == 2 and "would overwrite the scenario file" in error_line(result.output)
    assert json.loads(scenario.read_text()) == SHORT
    same = tmp_path / "t.jsonl"
    result = invoke("run", scenario, "--trace", same, "--pulses", same)
    assert result.exit_code == 2 and "the same file" in error_line(result.output)


def test_two_scenarios_with_one_name_do_not_share_a_trace(tmp_path):
    first, second = write_scenario(tmp_path / "a" / "x.json"), write_scenario(tmp_path / "b" / "x.json")
    folder = tmp_path / "coll"
    result = invoke("run", first, second, "--trace", folder)
    assert result.exit_code == 2
    line = error_line(result.output)
    assert str(first) in line and str(second) in line and "x.cpython.jsonl" in line
    assert not folder.exists() or os.listdir(folder) == []  # nothing ran


@pytest.mark.parametrize("args", [["S", "S"], ["S", "--runtime", "cpython", "--runtime", "cpython"]])
def test_the_same_run_twice_is_refused(tmp_path, args):
    scenario = write_scenario(tmp_path / "s.json")
    folder = tmp_path / "traces"
    result = invoke("run", *[scenario if arg == "S" else arg for arg in args], "--trace", folder)
    assert result.exit_code == 2 and "asked for twice" in error_line(result.output)
    assert not folder.exists() or os.listdir(folder) == []


def test_several_runs_into_an_existing_file(tmp_path):
    scenario = write_scenario(tmp_path / "s.json")
    existing = tmp_path / "existing.jsonl"
    existing.write_text("kept\n")
    result = invoke("run", scenario, scenario, "--trace", existing)  # was a FileExistsError traceback
    assert result.exit_code == 2
    assert "is a file; name a folder" in error_line(result.output)
    assert existing.read_text() == "kept\n"


def test_both_runtimes_still_share_a_folder(tmp_path):
    scenario = write_scenario(tmp_path / "s.json")
    result = invoke("run", scenario, "--runtime", "cpython", "--runtime", "micropython", "--trace", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "t")) == ["s.cpython.jsonl", "s.micropython.jsonl"]


# ---- plot: formats, the path written, time order ------------------------------------


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "t.jsonl"
    run_scenario(normalize(SHORT), str(path))
    return path


def test_plot_refuses_a_format_it_does_not_offer(trace, tmp_path):
    result = invoke("plot", trace, "-o", tmp_path / "x.txt")  # was a matplotlib ValueError traceback
    assert result.exit_code == 2
    assert "cannot draw a .txt picture" in error_line(result.output)
    assert ".png, .pdf or .svg" in error_line(result.output)
    assert not (tmp_path / "x.txt").exists()
    assert "PNG, PDF or SVG" in invoke("plot", "--help").output


@pytest.mark.parametrize("name, magic", [("x.png", b"\x89PNG"), ("x.pdf", b"%PDF"), ("x.svg", b"<?xml")])
def test_plot_writes_the_format_of_the_extension(trace, tmp_path, name, magic):
    out = tmp_path / name
    result = invoke("plot", trace, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)
    assert result.output.strip() == "wrote %s" % out


def test_plot_without_an_extension_names_the_file_it_wrote(trace, tmp_path):
    result = invoke("plot", trace, "-o", tmp_path / "noext")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "wrote %s.png" % (tmp_path / "noext")  # was "wrote .../noext"
    assert (tmp_path / "noext.png").read_bytes().startswith(b"\x89PNG")


def test_plot_checks_the_output_folder_first(trace, tmp_path):
    result = invoke("plot", trace, "-o", tmp_path / "missing" / "x.png")
    assert result.exit_code == 2 and "does not exist" in error_line(result.output)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs a /proc folder to fail creating a file in")
def test_plot_output_that_cannot_be_created_is_a_usage_error(trace):
    """/proc passes os.access as root: plot drew the picture, then failed to save it with status 1
    (an input problem), where `run` refuses the same path with status 2 before anything runs."""
    out = "/proc/pulsewarm-test-%d.png" % os.getpid()
    result = invoke("plot", trace, "-o", out)
    assert result.exit_code == 2, result.output
    # as root the real creation fails ("cannot create"); as another user, os.access already says no
    assert error_line(result.output).startswith("Error: -o %s: cannot " % out), result.output


def test_an_output_folder_that_is_a_file_is_named_as_one(trace, tmp_path):
    """It said "the folder .../t.jsonl does not exist" of a file that was there."""
    afile = tmp_path / "t.jsonl"
    afile.write_text("a trace\n")
    result = invoke("plot", trace, "-o", afile / "x.png")
    assert result.exit_code == 2
    assert "%s is a file, not a folder" % afile in error_line(result.output)
    scenario = write_scenario(tmp_path / "s.json")
    result = invoke("run", scenario, "--trace", afile / "x.jsonl")
    assert result.exit_code == 2
    assert "--trace %s: cannot write there: %s is a file, not a folder" % (afile / "x.jsonl", afile) in error_line(
        result.output)
    assert afile.read_text() == "a trace\n"


def test_plot_refuses_a_trace_going_back_in_time(trace, tmp_path):
    lines = trace.read_text().splitlines()
    pasted = tmp_path / "pasted.jsonl"
    pasted.write_text("\n".join(lines[:3] + lines[:2]) + "\n")  # two traces one after the other
    result = invoke("plot", pasted, "-o", tmp_path / "x.png")
    assert result.exit_code == 1
    assert "pasted.jsonl:4: t_s 0 is not after 0.2 on line 3" in error_line(result.output)
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(plot.PlotError, match="<trace>:2: t_s 0.1 is not after 0.1"):
        plot.parse_trace(lines[1:2] * 2)


# ---- inject -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served():
    with start_server(runtime="cpython", speed=5, pty=False, listen="127.0.0.1:0") as server:
        yield server


def test_clearing_a_fault_that_is_not_active_says_so(served):
    address = served.control_address
    result = invoke("inject", "--clear", "heater_stuck_on", "--control", address)
    assert result.exit_code == 0, result.output
    assert "heater_stuck_on was not active (nothing to clear); active faults: none" in result.output
    assert "cleared heater_stuck_on" not in result.output
    invoke("inject", "supply_sag", "--control", address)
    result = invoke("inject", "--clear", "supply_sag", "heater_open", "--control", address)
    assert "cleared supply_sag; heater_open was not active (nothing to clear); active faults: none" in result.output


@pytest.mark.parametrize("args, says", [
    (["--control", "garbage"], "a control address is HOST:PORT or PORT, got 'garbage'"),  # exited 1
    (["--port", ""], "the URL is empty"),  # chose the only device served
])
def test_inject_option_errors_exit_2(tmp_path, monkeypatch, args, says):
    monkeypatch.setenv("TENS_SIM_RUN_DIR", str(tmp_path))
    result = invoke("inject", "heater_open", *args)
    assert result.exit_code == 2 and says in error_line(result.output)


def test_clear_and_clear_all_together_are_refused(served):
    result = invoke("inject", "--clear", "--clear-all", "--control", served.control_address)
    assert result.exit_code == 2
    assert "--clear and --clear-all cannot be combined" in error_line(result.output)


def test_a_trace_path_ending_in_a_slash_is_a_folder(tmp_path):
    scenario = write_scenario(tmp_path / "s.json")
    folder = str(tmp_path / "new") + "/"
    result = invoke("run", scenario, "--trace", folder, "--pulses", tmp_path / "p.jsonl")  # was IsADirectoryError
    assert result.exit_code == 0, result.output
    assert os.listdir(folder) == ["s.cpython.jsonl"]


def test_an_invalid_scenario_exits_2_and_a_failed_expectation_exits_1(tmp_path):
    # CI must tell "the scenario file is wrong" from "the device broke a claim"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"duration_s": 2, "expect": [{"never": "state == RUNING"}]}))
    result = invoke("run", bad, "--check")
    assert result.exit_code == 2 and "RUNING" in error_line(result.output), result.output
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"duration_s": 2, "expect": [{"always": "state == RUNNING"}]}))
    result = invoke("run", broken, "--check")
    assert result.exit_code == 1 and ": expect[0] " in result.output and "1 failed" in result.output, result.output


def test_an_interrupted_run_leaves_the_last_complete_trace_and_no_whole_looking_one(tmp_path, monkeypatch):
    from sim import runner
    from sim.scenario import ScenarioRun

    scenario = normalize({"duration_s": 2, "steps": []})
    trace = tmp_path / "t.jsonl"
    lines = runner.run_here(scenario, str(trace))
    complete = trace.read_bytes()
    assert lines == 21 and complete.count(b"\n") == 21

    def interrupted(self):
        self.emit('{"t_s":0}')
        raise KeyboardInterrupt  # Ctrl-C in the middle of the run

    monkeypatch.setattr(ScenarioRun, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_here(scenario, str(trace))
    assert trace.read_bytes() == complete  # the last complete trace, untouched
    assert (tmp_path / "t.jsonl.partial").read_bytes() == b'{"t_s":0}\n'  # how far it got, named as such


def test_relative_paths_work_with_several_jobs(tmp_path, monkeypatch):
    """The worker processes of -j 2 run from the project root: a relative --trace was looked for there."""
    write_scenario(tmp_path / "sc" / "a.json")
    write_scenario(tmp_path / "sc" / "b.json")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "sc/a.json", "sc/b.json", "--check", "-j", "2", "--trace", "t/")
    assert result.exit_code == 0, result.output
    assert "2 runs, 0 expectations checked: all passed" in result.output
    assert sorted(os.listdir(tmp_path / "t")) == ["a.cpython.jsonl", "b.cpython.jsonl"]
    assert (tmp_path / "t" / "a.cpython.jsonl").read_text().count("\n") == 11


LONG_SESSION = {
    "duration_s": 1800, "channels": 2, "seed": 7,
    "steps": [
        {"at_s": 0.1, "send": {"op": "hello"}},
        {"at_s": 0.5, "send": {"op": "start", "amp_ua": [20000, 15000], "lease_ms": 0}},
        {"at_s": 0.6, "send": {"op": "heat", "level": "medium"}},
    ],
}


def running(pid):
    """Whether process `pid` exists and has not ended (a zombie has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.micropython
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the run's processes in /proc")
def test_a_sigterm_to_run_ends_the_runs_it_started(tmp_path):
    """A SIGTERM (a CI job's timeout, kill) ended only `tens-sim run` itself: its VM and worker
    processes ran on to the end of their scenarios, still writing their TRACE.partial files
    (a rerun to the same path shared them)."""
    scenarios = [str(write_scenario(tmp_path / ("long%d.json" % i), LONG_SESSION)) for i in range(2)]
    traces = tmp_path / "traces"
    run = subprocess.Popen(
        tens_sim_command() + ["run"] + scenarios + ["--runtime", "micropython", "--runtime", "cpython", "-j", "2",
                                                   "--trace", str(traces) + "/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while len(children(run.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = children(run.pid)
        assert len(started) == 2, "the two runs at once did not start"
        time.sleep(0.3)  # under way, writing
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=SERVE_TIMEOUT_S) == 128 + signal.SIGTERM, run.stderr.read()
        deadline = time.monotonic() + 5
        while any(running(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in started if running(pid)], "runs went on after tens-sim run ended"
        partial = sorted(traces.glob("*.partial"))
        assert partial, "no run had begun its trace"
        sizes = [path.stat().st_size for path in partial]
        time.sleep(0.5)
        assert [path.stat().st_size for path in partial] == sizes, "a trace is still being written"
        assert not list(traces.glob("*.jsonl")), "a run that was ended left a trace that looks whole"
    finally:
        for pid in children(run.pid):
            os.kill(pid, signal.SIGKILL)
        stop(run)


# ---- run: where a trace may go, and a write that fails mid-run ---------------------------------

FIVE_SECONDS = {"duration_s": 5, "steps": [{"at_s": 0.1, "send": {"op": "hello"}}]}  # ~20 KB of trace


def test_a_trace_path_that_is_a_pipe_is_refused_and_left_alone(tmp_path):
    """A run renames TRACE.partial over the path: a pipe (or /dev/null, as root) was replaced by a file."""
    scenario = write_scenario(tmp_path / "s.json")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = invoke("run", scenario, "--trace", fifo)
    assert result.exit_code == 2
    assert "not a regular file" in error_line(result.output) and str(fifo) in error_line(result.output)
    assert os.path.exists(fifo) and not os.path.isfile(fifo)  # still the pipe
    with pytest.raises(SimError, match="not a regular file"):
        run_scenario(normalize(SHORT), str(fifo))  # the library's own run refuses it too
    assert not os.path.isfile(fifo)


def test_a_trace_path_that_is_a_link_writes_the_file_it_names(tmp_path):
    """The link was replaced by a file, and the file it named was never written."""
    scenario = write_scenario(tmp_path / "s.json")
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    result = invoke("run", scenario, "--trace", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == target.name
    assert len(target.read_text().splitlines()) == 11


def run_with_file_limit(args, limit_bytes=8192):
    """`tens-sim ARGS` in a process whose files cannot grow past limit_bytes (a full disk)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(tens_sim_command() + [str(arg) for arg in args], capture_output=True, text=True,
                          timeout=SERVE_TIMEOUT_S * 3, preexec_fn=limit)


@pytest.mark.parametrize("extra", [[], ["-j", "2", "--runtime", "cpython", "--runtime", "micropython"]])
def test_a_trace_that_cannot_be_written_is_named_once_without_a_traceback(tmp_path, extra):
    """It said only "[Errno 27] File too large", twice, and with -j 2 showed the worker's traceback."""
    scenario = write_scenario(tmp_path / "s.json", FIVE_SECONDS)
    trace = tmp_path / ("out/" if extra else "t.jsonl")
    result = run_with_file_limit(["run", scenario, "--trace", trace] + extra)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if not extra:
        assert result.stderr.count("File too large") == 1, result.stderr
        assert "%s: cannot write the trace: File too large" % trace in result.stderr
        assert not trace.exists()  # no trace that looks whole
    else:
        assert "Traceback" not in result.stdout, result.stdout  # each run's ERROR line is on stdout
        assert "s.cpython.jsonl: cannot write the trace: File too large" in result.stdout
        assert "s.micropython.jsonl.partial holds 8192 bytes" in result.stdout  # the VM says nothing itself


def scenario_error(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    result = invoke("run", path, "--check")
    assert result.exit_code == 2, result.output  # refused before anything runs, not a crash mid-run (1)
    return error_line(result.output)


def with_step(step):
    return json.dumps(dict(SHORT, steps=SHORT["steps"] + [step]))


def test_a_raw_step_with_a_lone_surrogate_is_refused_before_the_run(tmp_path):
    line = scenario_error(tmp_path, with_step({"at_s": 0.5, "raw": "ok\ud800"}))
    assert "steps[1].raw" in line and "U+D800" in line and "character 2" in line


@pytest.mark.parametrize("anchor", ["1e308", "1" + "0" * 400])
def test_a_huge_anchor_is_outside_the_run(tmp_path, anchor):
    text = json.dumps(dict(SHORT, expect=[{"within_ms": 100, "after": 0, "that": "no_output"}]))
    line = scenario_error(tmp_path, text.replace('"after": 0', '"after": ' + anchor))
    assert "expect[0]" in line and "is outside the run (0..1.0 s)" in line and len(line) < 200


def test_json_nested_too_deeply_is_named(tmp_path):
    assert "nested too deeply" in scenario_error(tmp_path, '{"duration_s": 1, "x": ' + "[" * 5000 + "]" * 5000 + "}")
    deep_cond = "[" * 900 + '"no_output"' + "]" * 900  # JSON reads it; checking it would recurse past the limit
    text = json.dumps(dict(SHORT, expect=[{"always": 0}])).replace('"always": 0', '"always": ' + deep_cond)
    assert "nested too deeply" in scenario_error(tmp_path, text)


def test_a_number_with_too_many_digits_is_named_without_python_advice(tmp_path):
    line = scenario_error(tmp_path, '{"duration_s": ' + "9" * 5000 + "}")
    assert "more than 4300 digits" in line and "sys." not in line


# ---- plot: its input is never its output; a folder is a bad input (1) ---------------------------


@pytest.mark.parametrize("waveform", [False, True])
def test_plot_never_writes_over_its_input(trace, tmp_path, waveform):
    source = tmp_path / "input.svg"
    source.write_bytes(trace.read_bytes())
    args = ["--waveform", source] if waveform else [source]
    result = invoke("plot", *args, "-o", source)
    assert result.exit_code == 2
    assert "would overwrite its own input" in error_line(result.output)
    assert source.read_bytes() == trace.read_bytes()


@pytest.mark.parametrize("waveform", [False, True])
def test_plot_of_a_folder_is_a_bad_input(tmp_path, waveform):
    args = ["--waveform", tmp_path] if waveform else [tmp_path]
    result = invoke("plot", *args, "-o", tmp_path / "p.png")
    assert result.exit_code == 1  # what docs/sim.md says of an input plot cannot read (click said 2)
    assert "Is a directory" in error_line(result.output)
