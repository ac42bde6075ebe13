"""sim/bench_memory.py (the memory row of `make bench`): the same measurement over a
2-minute session inside the MicroPython VM with the Pico's heap, so the bench cannot rot."""

import pytest

from sim import bench_memory as bm

SHORT_S = 120


def test_schedule_fits_the_session():
    bursts = bm.schedule(SHORT_S)
    times = [at_ms for at_ms, _ in bursts]
    assert times == sorted(times)
    assert 0 < times[0] and times[-1] < SHORT_S * 1000
    ops = [fields["op"] for _, requests in bursts for fields in requests]
    assert ops.index("program_put") < ops.index("start") < ops.index("amp_step") < ops.index("stop")
    assert "telemetry" in ops and "status" in ops
    # every request has its id slot already: setting it in the VM must not grow the dict
    assert all("id" in fields for _, requests in bursts for fields in requests)
    # amplitude steps come in the TENS phase, after the warm-up third
    warm_ms = (SHORT_S // 3) * 1000
    assert all(at_ms > warm_ms for at_ms, requests in bursts if requests[0]["op"] == "amp_step")


def test_program_phases_add_up_to_the_session():
    program = bm.bench_program(SHORT_S)
    assert sum(phase["duration_s"] for phase in program["phases"]) == SHORT_S
    assert len(program["channels"]) == 2 and program["heat"]


def test_row_says_met_or_not():
    figures = {
        "peak_live_bytes": 40 * 1024, "heap_bytes": 388608, "estimate_32bit_bytes": 24 * 1024,
        "tick_peak_bytes": 2048, "code_firmware_bytes": 160 * 1024,
    }
    name, value, detail = bm.row(figures)
    assert value == "40.0 KB" and "goal <= 64 KB: met" in detail
    figures["peak_live_bytes"] = 65 * 1024
    assert "NOT MET" in bm.row(figures)[2]


@pytest.mark.micropython
@pytest.mark.timeout(120)
def test_short_session_under_the_picos_heap():
    figures = bm.measure(SHORT_S)
    word = figures["word_bytes"]
    assert word in (4, 8)
    assert figures["storage"] in ("Rp2Storage", "FileStorage")  # flash on disk, not in the heap
    assert figures["firmware_file"].endswith("/firmware/device.mpy")  # the build's bytecode, as on the board
    # "192wK": the Pico's 48K words, in this build's word size (less the GC's own tables)
    assert 0.97 * 48 * 1024 * word <= figures["heap_bytes"] <= 48 * 1024 * word
    # the session ran as scripted: no refused request, both channels up, heat on, stopped
    assert figures["first_error"] is None and figures["replies_error"] == 0
    assert figures["replies_ok"] >= 30
    assert figures["telemetry_events"] >= SHORT_S * 1000 // bm.TELEMETRY_EVERY_MS - 100
    assert figures["max_amp_ua"] >= 20000
    assert figures["heat_active_s"] >= SHORT_S * 3 // 4 and figures["heat_on_s"] > 0
    assert figures["final_state"] == "IDLE"
    assert figures["log_records"] >= 5
    # sensible numbers: the firmware's data is positive, grows with a session, stays far below the heap
    assert 0 < figures["device_bytes"] <= figures["peak_live_bytes"] < figures["heap_bytes"] // 2
    assert figures["samples"] >= SHORT_S * 1000 // bm.TICK_MS // bm.MEASURE_EVERY_TICKS
    assert figures["components"]["Link"] > 0 and figures["components"]["HeatController"] > 0
    assert 0 < figures["estimate_32bit_bytes"] <= figures["peak_live_bytes"]
    assert figures["tick_peak_bytes"] > 0 and figures["lost_ticks"] == 0
    assert figures["code_firmware_bytes"] > figures["device_bytes"]
    # nothing of the simulator or the harness grows: what outlives the Device is small
    assert 0 <= figures["residual_bytes"] < 8192
    name, value, detail = bm.row(figures)
    assert value.endswith(" KB") and "goal <= 64 KB" in detail


@pytest.mark.micropython
@pytest.mark.timeout(60)
def test_a_heap_too_small_is_reported():
    with pytest.raises(RuntimeError, match="MemoryError"):
        bm.measure(10, heap="32wK")
