"""Firmware tick benchmarks, portable: run under CPython or the MicroPython VM.

    micropython sim/bench_tick.py      prints one JSON line of results

- tick cost: `Device.tick()` with two channels at 100 Hz, RUNNING at target, over
  drivers that do nothing (so the figure is the firmware's own cost); and the same
  with the heat pad held at 40 C (a heater switch that only counts, a thermistor that
  reads the target with one code of dither): the least a simulated tick can cost;
- heap per steady tick: bytes allocated per tick in those steady states, with the
  collector off while counting (MicroPython's gc.mem_alloc; CPython has no
  equivalent and reports -1);
- fault latency: ticks from the first pulse into an open electrode to zero output;
- a status request's cost through the link (decode, handle, JSON, CRC) with the pad held: the
  figure to scale to the board when checking the link's per-tick time budget (docs/hardware.md).
"""

import gc
import sys
import time

from firmware.protocols import frame
from sim import faults
from sim.board import SimBoard


class NullPulseOutput:
    channels = 2
    hw_max_amp_ua = 100000
    hw_max_phase_us = 2000

    def __init__(self):
        self.pulses = 0

    def fire(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        self.pulses += 1
        return True

    def off(self):
        pass


class EchoSense:
    """Reports what was commanded: a healthy load, at no cost."""

    def __init__(self, device_ref):
        self._ref = device_ref

    def read_ua(self, ch):
        return self._ref[0].channels[ch].fired_ua

    def at_compliance(self, ch):
        return False


class QuietSerial:
    def __init__(self):
        self.inbox = bytearray()

    def read_into(self, buf):
        count = min(len(buf), len(self.inbox))
        if count:
            buf[:count] = self.inbox[:count]
            self.inbox = self.inbox[count:]
        return count

    def write(self, data):
        return len(data)


class NullHeater:
    def lease(self, duty_permille, lease_ms):
        pass

    def off(self):
        pass


class HoldingThermistor:
    """Reads the code of a pad at `temp_mc`, alternating one code up and down (ADC noise)."""

    def __init__(self, temp_mc):
        from firmware.heat.thermistor import mc_to_code

        self._code = mc_to_code(temp_mc)
        self._flip = 0

    def read_raw(self):
        self._flip ^= 1
        return self._code + self._flip


class StepClock:
    def __init__(self):
        self.now = 0

    def ticks_ms(self):
        return self.now


def _now_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.perf_counter_ns() // 1000


def _elapsed_us(start):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(time.ticks_us(), start)
    return time.perf_counter_ns() // 1000 - start


def steady_device(heat=False):
    from firmware.device import Device

    ref = [None]
    clock = StepClock()
    serial = QuietSerial()
    heater = NullHeater() if heat else None
    thermistor = HoldingThermistor(40000) if heat else None
    device = Device(clock, NullPulseOutput(), EchoSense(ref), serial, "bench", heater=heater, thermistor=thermistor)
    ref[0] = device
    serial.inbox.extend(frame.encode_frame({"id": 1, "op": "start", "amp_ua": [20000, 20000], "lease_ms": 0}))
    if heat:
        serial.inbox.extend(frame.encode_frame({"id": 2, "op": "heat", "level": "medium"}))
    for _ in range(1000):  # ramp to target
        device.tick()
        clock.now += 10
    return device, clock


def tick_cost_us(ticks, heat=False):
    device, clock = steady_device(heat)
    if heat and device.heat.state != "holding":
        raise RuntimeError("bench: heat is %s, not holding: %s" % (device.heat.state, device.heat.fault_msg))
    # MicroPython puts a call frame of more than 11 slots on the heap (freed on return); in a
    # heap full of garbage finding room for it takes a long scan, so time from a collected heap
    gc.collect()
    start = _now_us()
    for _ in range(ticks):
        device.tick()
        clock.now += 10
    return _elapsed_us(start) / ticks


def heap_per_tick(ticks, heat=False):
    if not hasattr(gc, "mem_alloc"):
        return -1
    device, clock = steady_device(heat)
    gc.collect()
    gc.disable()  # a collection inside the loop would hide what was allocated
    try:
        before = gc.mem_alloc()
        for _ in range(ticks):
            device.tick()
            clock.now += 10
        return (gc.mem_alloc() - before) / ticks
    finally:
        gc.enable()


def status_reply_us(count):
    """One status request in, its reply out, through the link of a device holding the pad."""
    device, clock = steady_device(heat=True)
    request = frame.encode_frame({"id": 7, "op": "status"})
    serial = device.link.serial
    gc.collect()
    start = _now_us()
    for _ in range(count):
        serial.inbox.extend(request)
        device.link.receive()
        device.link.flush()
    return _elapsed_us(start) / count


def fault_latency_ticks(stim):
    """Ticks from the first pulse into an open electrode until the device has zero output."""
    board = SimBoard(seed=3)
    device = board.build_device()
    board.serial.host_write(frame.encode_frame({"id": 1, "op": "set_stim", "ch": 1, "stim": stim}))
    board.serial.host_write(frame.encode_frame({"id": 2, "op": "start", "amp_ua": [0, 20000], "lease_ms": 0}))
    for _ in range(800):
        device.tick()
        board.advance(10)
    faults.set_fault(board, "electrode_off:1", True)
    first_pulse_tick = -1
    for tick in range(1, 1000):
        before = board.pulse_out.pulse_count[1]
        device.tick()
        board.advance(10)
        fired = board.pulse_out.pulse_count[1] > before
        if first_pulse_tick < 0 and fired:
            first_pulse_tick = tick
        if first_pulse_tick >= 0 and device.supervisor.state_name == "FAULT" and not fired:
            return tick - first_pulse_tick
    return -1


def main():
    results = {
        "tick_us": tick_cost_us(3000),
        "tick_heat_us": tick_cost_us(3000, heat=True),
        "heap_bytes_per_tick": heap_per_tick(3000),
        "heap_heat_bytes_per_tick": heap_per_tick(3000, heat=True),
        "latency_continuous_ticks": fault_latency_ticks({"mode": "continuous", "rate_hz": 100}),
        "latency_acupuncture_ticks": fault_latency_ticks({"mode": "acupuncture", "rate_hz": 2}),
        "latency_burst_ticks": fault_latency_ticks({"mode": "burst"}),
        "status_reply_us": status_reply_us(300),
    }
    parts = []
    for key in sorted(results):
        value = results[key]
        parts.append('"%s":%s' % (key, ("%.3f" % value) if isinstance(value, float) else str(value)))
    sys.stdout.write("{" + ",".join(parts) + "}\n")


main()
