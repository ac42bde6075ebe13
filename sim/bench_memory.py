"""Firmware memory over a 30-minute two-channel session with heat, inside the MicroPython VM.

    micropython -X heapsize=192wK sim/bench_memory.py SESSION_S STORAGE_DIR     one JSON line

`rows()` (CPython) runs that and gives the `make bench` row: the firmware's peak live heap
(gc.mem_alloc() after gc.collect()) without the simulator's own models. Goal <= 64 KB.

The heap. The issue asks for "-X heapsize=48Kw", the Pico's heap counted in words (48K
words of 4 bytes, 192 KB; the RP2040 port boots with about 190 KB free). The unix port
rejects "48Kw": its syntax is `<n>[w][K|M]`, where `w` scales a byte count given for a
32-bit machine to this one's word size. So the Pico's heap is "192wK": 196608 bytes on a
32-bit build, 393216 bytes (48K words of 8 bytes) on this 64-bit one. ("48wK" would be a
48 KB heap on a 32-bit board, a quarter of the Pico's.)

The session: a clinician's host uploads a program (a third warm-up heat, then conventional
TENS on both channels with the pad at 40 C), starts it with no host lease, asks for 5 Hz
telemetry (tensctl monitor's rate), a status every 10 s, steps the amplitudes, reads the
log, stops 10 s before the end and records a pain score: 30 simulated minutes, 180 000
ticks of 10 ms, every one of them run (no idle part is skipped).

What counts (all measured after gc.collect(), so only live objects):
- baseline: firmware and simulator code imported, the SimBoard and the host's script
  built. The firmware's code is reported apart (`code_firmware_bytes`): loaded from the
  .mpy files `make firmware` would build (measure() builds them into a temporary folder
  ahead of the sources on MICROPYPATH), as on the board; the simulator's code is compiled
  from source. Frozen into flash instead, the firmware's code would leave the heap.
- live: the Device and everything it keeps, sampled every MEASURE_EVERY_TICKS ticks and
  AFTER_BURST_TICKS ticks after every request burst (when the burst has been read,
  handled and answered); the peak of (mem_alloc - baseline) is the bench figure.
- The simulator keeps nothing that grows: its models hold fixed numbers and the host
  drains the serial line every tick. Its storage would: the flash filesystem is a dict
  of bytearrays in RAM, so every session-log record would count as firmware heap. The
  device gets the board's own flash driver instead (firmware/drivers/rp2_storage.py: files
  through open(), which the unix port has too; `FileStorage` below, the same in a few
  lines, if it is missing), so flash stays out of the heap as on the board. After the run the
  Device is dropped and what is left above the baseline is reported (`residual_bytes`):
  the simulator's and the harness's growth together with what the firmware keeps in
  module state (jsonenc's bounded string cache); it is not subtracted from the peak.
- per tick: the bytes each device.tick() allocates (mem_alloc before and after it; the
  heavy ticks, those with requests, and any tick after GARBAGE_COLLECT_AT bytes of
  garbage start from a collection, so no automatic collection runs inside a tick and
  `lost_ticks` stays 0). The largest is the most garbage one tick makes: peak live plus
  that bounds the heap the firmware needs if a collection ran at every tick boundary
  (`high_water_bytes`, an upper bound: garbage made early in a tick can be collected
  within it).
- construction: the bytes each firmware component keeps, by wrapping the constructors
  Device.__init__ calls by name (a collection before and after each);
  `components_other_bytes` is the Device's total less their sum (the Device object, its
  handler table and lists; it comes out slightly negative because the collector scans
  the C stack conservatively and a wrapper can count a few blocks that go later).

64-bit vs the board: MicroPython objects are counted in machine words and the GC hands out
blocks of 4 words, 32 bytes here and 16 bytes on the RP2040. Everything made of words
(instances, dicts, lists, tuples, bound methods, small ints inside them) takes exactly half
the bytes on the board; byte payloads (bytes, str and bytearray contents) take the same
bytes on both. `estimate_32bit_bytes` halves the live peak except for the byte payloads the
firmware keeps in its serial link (reply cache frames, buffers), counted at full size:
an estimate, between raw/2 and raw.
"""

import gc
import sys

HEAP = "192wK"  # the Pico's 48K words (see above): 393216 bytes on a 64-bit build
GOAL_KB = 64
SESSION_S = 30 * 60
TICK_MS = 10
MEASURE_EVERY_TICKS = 1000  # 10 s of simulated time
AFTER_BURST_TICKS = 5  # measure when a burst has been read, handled and answered
TELEMETRY_EVERY_MS = 200  # tensctl monitor's default
STATUS_EVERY_MS = 10000
GARBAGE_COLLECT_AT = 32768  # collect before a tick once this much garbage built up: no collection in a tick
PROGRAM = "bench-heat-tens"
HELLO_UNIX_S = 1718000000
FIGURE_KEYS = (  # every figure the VM reports (the dict holds them all before the baseline)
    "session_s", "ticks", "wall_ms", "heap_bytes", "word_bytes", "storage", "firmware_file",
    "code_firmware_bytes", "code_sim_bytes", "sim_and_harness_bytes",
    "device_bytes", "components", "components_other_bytes",
    "peak_live_bytes", "peak_live_at_ms", "end_live_bytes", "residual_bytes", "samples",
    "link_payload_bytes", "estimate_32bit_bytes",
    "tick_peak_bytes", "tick_peak_at_ms", "high_water_bytes", "allocated_bytes", "allocated_per_s", "lost_ticks",
    "replies_ok", "replies_error", "first_error", "telemetry_events", "heat_on_s", "heat_active_s", "max_amp_ua",
    "session_run_ms", "final_state", "log_records",
)


# ---- inside the VM -----------------------------------------------------------------------


class FileStorage:
    """The storage driver interface over files in one folder: flash stays out of the heap.
    Used when the board's driver (firmware/drivers/rp2_storage.py) is not there."""

    def __init__(self, folder):
        self.folder = folder

    def _path(self, name):
        return self.folder + "/" + name

    def append(self, name, data):
        with open(self._path(name), "ab") as handle:
            handle.write(data)
        return len(data)

    def read(self, name, offset, size):
        try:
            handle = open(self._path(name), "rb")
        except OSError:
            return b""
        with handle:
            handle.seek(offset)
            return handle.read(size)

    def size(self, name):
        import os

        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return 0

    def remove(self, name):
        import os

        try:
            os.remove(self._path(name))
        except OSError:
            pass


def bench_program(session_s):
    """heat-then-tens fitted to the session: a third warm-up heat, then TENS on both channels with heat."""
    warm_s = session_s // 3
    stim = {"mode": "continuous", "rate_hz": 100, "phase_us": 100}
    return {
        "name": PROGRAM,
        "description": "memory bench: warm-up heat, then two channels of conventional TENS with heat",
        "channels": [
            {"stim": stim, "amp_ua": 20000, "max_amp_ua": 30000},
            {"stim": stim, "amp_ua": 15000, "max_amp_ua": 30000},
        ],
        "heat": {"level": "medium"},
        "phases": [
            {"name": "warm-up", "duration_s": warm_s, "tens": False, "heat": True},
            {"name": "tens-and-heat", "duration_s": session_s - warm_s, "tens": True, "heat": True},
        ],
    }


def schedule(session_s):
    """(at_ms, [request fields]) bursts of a host over the session, in time order: the
    set-up a clinician's host does, 5 Hz telemetry, a status every 10 s, amplitude steps
    in the TENS phase, a look at the log, the stop and the pain score after."""
    end_ms = session_s * 1000
    tens_ms = (session_s // 3) * 1000
    bursts = [
        (100, [{"op": "hello", "unix_s": HELLO_UNIX_S}]),
        (150, [{"op": "programs"}, {"op": "settings"}, {"op": "get_stim", "ch": 0}, {"op": "get_stim", "ch": 1},
               {"op": "log_info"}]),
        (300, [{"op": "program_put", "program": bench_program(session_s)},
               {"op": "pain", "when": "before", "score": 6}]),
        (500, [{"op": "start", "program": PROGRAM, "lease_ms": 0},
               {"op": "telemetry", "every_ms": TELEMETRY_EVERY_MS}]),
    ]
    for at_ms in range(STATUS_EVERY_MS // 2, end_ms - 10000, STATUS_EVERY_MS):
        bursts.append((at_ms, [{"op": "status"}]))
    for at_ms, steps in (
        (tens_ms + 10000, (1, 1)), (tens_ms + 20000, (1, 1)), (tens_ms + 30000, (2, 1)),
        (end_ms * 3 // 5, (1, -1)), (end_ms * 4 // 5, (-1, 1)),
    ):
        bursts.append(
            (at_ms, [{"op": "amp_step", "ch": 0, "steps": steps[0]}, {"op": "amp_step", "ch": 1, "steps": steps[1]}])
        )
    bursts.append((end_ms * 2 // 3 + 1000, [{"op": "log_info"}, {"op": "log_fetch", "from_seq": 1}]))
    bursts.append((end_ms - 10000, [{"op": "stop"}]))
    bursts.append((end_ms - 2000, [{"op": "pain", "when": "after", "score": 3}, {"op": "log_info"}, {"op": "status"}]))
    bursts.sort(key=lambda burst: burst[0])
    for _, requests in bursts:
        for fields in requests:
            fields["id"] = 0  # the id is set when sent: the dict does not grow then
    return bursts


def _count(data, pattern):
    found = 0
    at = data.find(pattern)
    while at >= 0:
        found += 1
        at = data.find(pattern, at + 1)
    return found


def _instrument():
    """Wrap the constructors Device.__init__ calls by name (every class among firmware.device's
    globals, the heat controller and the supervisor): each adds the bytes its object keeps
    to costs[name]. Returns (costs, restore), restore() puts the originals back."""
    import firmware.device as device_module
    import firmware.heat.heat as heat_module
    import firmware.supervisor as supervisor_module

    targets = [(heat_module, "HeatController"), (supervisor_module, "Supervisor")]
    for name in dir(device_module):
        value = getattr(device_module, name)
        if name[0] != "_" and name != "Device" and isinstance(value, type) and not issubclass(value, BaseException):
            targets.append((device_module, name))
    costs = {}
    originals = []
    for home, name in targets:
        original = getattr(home, name, None)
        if original is None:
            continue
        costs[name] = 0
        originals.append((home, name, original))
    for home, name, original in originals:
        setattr(home, name, _measured(original, costs, name))

    def restore():
        for home, name, original in originals:
            setattr(home, name, original)

    return costs, restore


def _measured(cls, costs, name):
    def build(*args):
        gc.collect()
        before = gc.mem_alloc()
        made = cls(*args)
        gc.collect()
        costs[name] += gc.mem_alloc() - before
        return made

    return build


def _link_byte_payload(link):
    """Bytes held in byte buffers by the serial link (the same size on a 32-bit board): its
    receive buffers, output queue and cached reply frames. Private fields, read with care:
    a Link without them counts 0 here (the 32-bit estimate then halves everything)."""
    total = 0
    for held in (getattr(link, "_rx_buf", None), getattr(link, "_tx", None),
                 getattr(getattr(link, "_reader", None), "_buf", None)):
        if isinstance(held, (bytes, bytearray)):
            total += len(held)
    for cached in getattr(link, "_reply_cache", ()):
        for item in cached:
            if isinstance(item, bytes):
                total += len(item) + 1  # with its terminating zero
    return total


def run(session_s, folder):
    gc.collect()
    start_bytes = gc.mem_alloc()
    import firmware.device  # noqa: F401  (the firmware's code, and what it imports)
    import firmware.heat.heat  # noqa: F401  (imported by Device.__init__ on a board with a pad)
    from firmware.protocols import frame  # noqa: F401

    try:
        from firmware.drivers.rp2_storage import Rp2Storage as Flash  # the board's own flash driver
    except ImportError:
        Flash = FileStorage
    gc.collect()
    code_firmware = gc.mem_alloc() - start_bytes
    from sim.board import SimBoard

    gc.collect()
    code_sim = gc.mem_alloc() - start_bytes - code_firmware
    board = SimBoard(seed=7)
    board.storage = Flash(folder)  # flash, not RAM (see the module docstring)
    bursts = schedule(session_s)
    costs, restore = _instrument()
    figures = dict((key, 0) for key in FIGURE_KEYS)  # every key now: filling it in allocates nothing
    gc.collect()
    sim_and_harness = gc.mem_alloc() - start_bytes - code_firmware - code_sim
    baseline = gc.mem_alloc()
    _session(board, bursts, session_s, baseline, costs, restore, figures)
    # The Device is gone with _session's frame: what is left above the baseline was kept by
    # the simulator, this harness, or the firmware's module state.
    gc.collect()
    figures["residual_bytes"] = gc.mem_alloc() - baseline
    figures["heap_bytes"] = gc.mem_alloc() + gc.mem_free()
    figures["word_bytes"] = 8 if sys.maxsize > 0x7FFFFFFF else 4
    figures["storage"] = Flash.__name__
    figures["firmware_file"] = firmware.device.__file__  # .mpy: the code as the board loads it
    figures["code_firmware_bytes"] = code_firmware
    figures["code_sim_bytes"] = code_sim
    figures["sim_and_harness_bytes"] = sim_and_harness
    figures["components"] = costs
    figures["components_other_bytes"] = figures["device_bytes"] - sum(costs.values())
    peak, payload = figures["peak_live_bytes"], figures["link_payload_bytes"]
    figures["estimate_32bit_bytes"] = peak if figures["word_bytes"] == 4 else (peak - payload) // 2 + payload
    figures["high_water_bytes"] = peak + figures["tick_peak_bytes"]
    figures["allocated_per_s"] = figures["allocated_bytes"] // session_s
    return figures


def _session(board, bursts, session_s, baseline, costs, restore, figures):
    """Build the Device and run the session; fills figures. Its frame (and every stale
    reference to the Device in it) is gone when it returns."""
    import time

    from firmware.protocols import frame

    total_ticks = session_s * 1000 // TICK_MS
    serial = board.serial
    mem_alloc = gc.mem_alloc
    collect = gc.collect
    try:
        device = board.build_device("pulsewarm-mem-0")
    except Exception:  # noqa: BLE001 - a constructor the wrappers do not suit: build it plainly
        restore()
        for name in costs:
            costs[name] = 0
        device = board.build_device("pulsewarm-mem-0")
    restore()
    collect()
    floor = mem_alloc()
    device_bytes = floor - baseline
    peak_live = device_bytes
    peak_live_ms = 0
    peak_payload = _link_byte_payload(device.link)
    samples = 0
    tick_peak = 0
    tick_peak_ms = 0
    allocated = 0
    lost_ticks = 0  # ticks during which an automatic collection ran (their allocation is unknown)
    replies_ok = 0
    replies_error = 0
    first_error = None
    telemetry_events = 0
    heat_on_ticks = 0
    heat_active_ticks = 0
    max_amp_ua = 0
    next_request_id = 1
    burst_index = 0
    measure_at = -1
    started_ms = time.ticks_ms()
    for tick in range(total_ticks):
        now_ms = tick * TICK_MS
        if burst_index < len(bursts) and bursts[burst_index][0] <= now_ms:
            while burst_index < len(bursts) and bursts[burst_index][0] <= now_ms:
                for fields in bursts[burst_index][1]:
                    fields["id"] = next_request_id
                    next_request_id += 1
                    serial.host_write(frame.encode_frame(fields))
                burst_index += 1
            measure_at = tick + AFTER_BURST_TICKS
        before = mem_alloc()
        if tick <= measure_at or before - floor > GARBAGE_COLLECT_AT:
            # requests make the heavy ticks: start them, and any tick after much garbage, with
            # none, so that no automatic collection runs inside the tick and hides its figure
            collect()
            before = mem_alloc()
            floor = before
        device.tick()
        after = mem_alloc()
        if after < before:
            lost_ticks += 1
        else:
            grown = after - before
            allocated += grown
            if grown > tick_peak:
                tick_peak = grown
                tick_peak_ms = now_ms
        board.advance(TICK_MS)
        out = serial.host_read()
        if out:
            replies_ok += _count(out, b'"ok":true')
            errors = _count(out, b'"ok":false')
            if errors:
                replies_error += errors
                if first_error is None:
                    first_error = out.decode()
            telemetry_events += _count(out, b'"ev":"telemetry"')
        if board.heater.on():
            heat_on_ticks += 1
        if device.heat.state != "off":
            heat_active_ticks += 1
        for channel in device.channels:
            if channel.amp_ua > max_amp_ua:
                max_amp_ua = channel.amp_ua
        if tick == measure_at or tick % MEASURE_EVERY_TICKS == MEASURE_EVERY_TICKS - 1:
            collect()
            floor = mem_alloc()
            live = floor - baseline
            samples += 1
            if live > peak_live:
                peak_live = live
                peak_live_ms = now_ms
                peak_payload = _link_byte_payload(device.link)
    figures["wall_ms"] = time.ticks_diff(time.ticks_ms(), started_ms)
    figures["final_state"] = device.supervisor.state_name
    figures["log_records"] = device.recorder.log.info()["last_seq"]
    figures["session_run_ms"] = device.session_run_ms
    collect()
    figures["end_live_bytes"] = mem_alloc() - baseline
    figures["session_s"] = session_s
    figures["ticks"] = total_ticks
    figures["device_bytes"] = device_bytes
    figures["peak_live_bytes"] = peak_live
    figures["peak_live_at_ms"] = peak_live_ms
    figures["link_payload_bytes"] = peak_payload
    figures["samples"] = samples
    figures["tick_peak_bytes"] = tick_peak
    figures["tick_peak_at_ms"] = tick_peak_ms
    figures["allocated_bytes"] = allocated
    figures["lost_ticks"] = lost_ticks
    figures["replies_ok"] = replies_ok
    figures["replies_error"] = replies_error
    figures["first_error"] = first_error
    figures["telemetry_events"] = telemetry_events
    figures["heat_on_s"] = heat_on_ticks * TICK_MS // 1000  # the heater switch on (it duty-cycles)
    figures["heat_active_s"] = heat_active_ticks * TICK_MS // 1000  # the heat controller engaged
    figures["max_amp_ua"] = max_amp_ua


def main(argv):
    import json

    figures = run(int(argv[1]), argv[2])
    sys.stdout.write(json.dumps(figures) + "\n")


# ---- the CPython side ------------------------------------------------------------------


def measure(session_s=SESSION_S, heap=HEAP, timeout_s=900):
    """Run the measurement in a fresh `micropython -X heapsize=HEAP`; returns its figures."""
    import json
    import os
    import subprocess
    import tempfile

    from sim import launcher

    from host import build_firmware

    root = launcher.project_root()
    script = os.path.join(root, "sim", "bench_memory.py")
    with tempfile.TemporaryDirectory() as folder:
        # the firmware as the board loads it: .mpy from the build (compiling source here would
        # also need the compiler's working memory, which the board never spends)
        build_dir = os.path.join(folder, "build")
        build_firmware.build(root, build_dir)
        flash_dir = os.path.join(folder, "flash")
        os.mkdir(flash_dir)
        env = launcher.micropython_env()
        env["MICROPYPATH"] = build_dir + os.pathsep + env["MICROPYPATH"]
        command = [launcher.micropython_executable(), "-X", "heapsize=" + heap, script, str(session_s), flash_dir]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(
            "memory bench failed under micropython -X heapsize=%s (exit %d):\n%s"
            % (heap, result.returncode, (result.stderr or result.stdout).strip()[-2000:])
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def row(figures):
    kb = figures["peak_live_bytes"] / 1024.0
    word = figures.get("word_bytes", 8)
    return (
        "firmware peak live heap, 30-min 2-ch session with heat, micropython",
        "%.1f KB" % kb,
        "goal <= %d KB: %s; heap %s = 48K words (%d KB, %d-bit); ~%.0f KB on the 32-bit board; "
        "code %.0f KB apart; <= %.0f KB garbage in one tick"
        % (
            GOAL_KB, "met" if kb <= GOAL_KB else "NOT MET", HEAP, 48 * word, word * 8,
            figures["estimate_32bit_bytes"] / 1024.0, figures["code_firmware_bytes"] / 1024.0,
            figures["tick_peak_bytes"] / 1024.0,
        ),
    )


def rows():
    return [row(measure())]


if __name__ == "__main__" and sys.implementation.name == "micropython":
    main(sys.argv)
