"""Simulated drivers, following `firmware/drivers/interfaces.py` exactly.

A `SimBoard` is one simulated device's hardware: clock, output stage into an
electrode load, output sense, and a serial line made of two byte queues.
Faults are injected by changing the hardware state (see `sim.faults`).
"""

from sim.clock import VirtualClock
from sim.models import ElectrodeLoad, SenseAdc
from sim.rng import Rng

HW_MAX_AMP_UA = 80000
HW_MAX_PHASE_US = 500
SERIAL_TX_CAPACITY = 8192  # bytes the "USB" holds before a write is refused


class SimPulseOutput:
    def __init__(self, loads, channels):
        self.channels = channels
        self.hw_max_amp_ua = HW_MAX_AMP_UA
        self.hw_max_phase_us = HW_MAX_PHASE_US
        self._loads = loads
        self.last_commanded_ua = [0] * channels  # what the last pulse asked for
        self.last_delivered_ua = [0] * channels  # what actually flowed
        self.pulse_count = [0] * channels
        self.gain_fault = [False] * channels  # injected: the stage overshoots
        self.queue_full = False  # injected: every fire() is refused
        self.recorder = None  # optional callable(ch, start_us, amp_ua, phase_us, gap_us, delivered_ua)

    def fire(self, ch, start_us, amp_ua, phase_us, gap_us):
        if self.queue_full or ch < 0 or ch >= self.channels:
            return False
        if amp_ua > self.hw_max_amp_ua:
            amp_ua = self.hw_max_amp_ua
        if amp_ua < 0:
            amp_ua = 0
        if phase_us > self.hw_max_phase_us:
            phase_us = self.hw_max_phase_us
        driven_ua = amp_ua
        if self.gain_fault[ch]:
            driven_ua = amp_ua + amp_ua // 2 + 5000
        delivered = self._loads[ch].delivered_ua(driven_ua)
        self.last_commanded_ua[ch] = amp_ua
        self.last_delivered_ua[ch] = delivered
        self.pulse_count[ch] += 1
        if self.recorder is not None:
            self.recorder(ch, start_us, amp_ua, phase_us, gap_us, delivered)
        return True

    def off(self):
        for ch in range(self.channels):
            self.last_commanded_ua[ch] = 0
            self.last_delivered_ua[ch] = 0

    def take_delivered(self, ch):
        """The current of the last pulse since the previous call (0 if none)."""
        value = self.last_delivered_ua[ch]
        self.last_delivered_ua[ch] = 0
        return value


class SimOutputSense:
    def __init__(self, pulse_out, adc):
        self._pulse_out = pulse_out
        self._adc = adc
        self.broken = False  # injected: the ADC read raises

    def read_ua(self, ch):
        if self.broken:
            raise OSError("output-sense ADC not responding")
        return self._adc.measure_ua(self._pulse_out.take_delivered(ch))


class SimSerial:
    """Device side of the serial line. The host side uses host_write/host_read."""

    def __init__(self, tx_capacity=SERIAL_TX_CAPACITY):
        self._rx = bytearray()  # host -> device
        self._tx = bytearray()  # device -> host
        self.tx_capacity = tx_capacity

    # device side (the Serial driver interface)
    def read_into(self, buf):
        count = min(len(buf), len(self._rx))
        if count:
            buf[:count] = self._rx[:count]
            self._rx = self._rx[count:]
        return count

    def write(self, data):
        room = self.tx_capacity - len(self._tx)
        count = min(room, len(data))
        if count > 0:
            self._tx.extend(data[:count])
            return count
        return 0

    # host side
    def host_write(self, data):
        self._rx.extend(data)

    def host_read(self):
        data = bytes(self._tx)
        self._tx = bytearray()
        return data


class SimBoard:
    def __init__(self, seed=1, start_ms=0, channels=1, resistance_ohm=1000):
        self.rng = Rng(seed)
        self.clock = VirtualClock(start_ms)
        self.loads = [ElectrodeLoad(resistance_ohm) for _ in range(channels)]
        self.pulse_out = SimPulseOutput(self.loads, channels)
        self.sense = SimOutputSense(self.pulse_out, SenseAdc(self.rng))
        self.serial = SimSerial()
        self.nominal_resistance_ohm = resistance_ohm
        self.active_faults = []

    def build_device(self, device_id="pulsewarm-sim-0"):
        from firmware.device import Device

        return Device(self.clock, self.pulse_out, self.sense, self.serial, device_id)
