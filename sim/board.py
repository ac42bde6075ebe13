"""Simulated drivers, following `firmware/drivers/interfaces.py` exactly.

A `SimBoard` is one simulated device's hardware: clock, output stage into an
electrode-skin load per channel, output sense, and a serial line made of two
byte queues. Faults are injected by changing the hardware state (see
`sim.faults`), never the firmware. Nothing here allocates per pulse, so heap
measurements of a simulated tick measure the firmware.
"""

from firmware.clock import TICKS_MAX
from firmware.compat import const
from firmware.ram_storage import RamStorage
from sim.clock import VirtualClock
from sim.models import ElectrodeLoad, SenseAdc
from sim.rng import Rng
from sim.thermal import PadPlant
from sim.thermistor_model import ThermistorModel

HW_MAX_AMP_UA = 100000
HW_MAX_PHASE_US = 2000
SERIAL_TX_CAPACITY = 8192  # bytes the "USB" holds before a write is refused
# firmware.clock's tick ring, as compile-time constants for the inlined ticks_diff in SimHeater.on
_TICKS_MASK = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)
assert _TICKS_MASK == TICKS_MAX


class SimPulseOutput:
    """The output stage. By default a pulse reaches the output sense at once (at fire()).

    lead_us > 0 models the board's timing instead (rp2_pulse.py): a window's pulses start
    lead_us after the tick that fed them, so a pulse late in its window completes after
    the next tick's sense read; the sense sees each pulse only once it has completed
    (`land`). Tests use it; the scenario runner keeps the instant sense (lead_us 0), which
    allocates nothing per pulse.
    """

    def __init__(self, loads, channels, clock=None, lead_us=0):
        self.channels = channels
        self.lead_us = lead_us
        self._clock = clock
        self._in_flight = [[] for _ in range(channels)]  # (done_at_us, delivered_ua, at_compliance)
        self.hw_max_amp_ua = HW_MAX_AMP_UA
        self.hw_max_phase_us = HW_MAX_PHASE_US
        self.asymmetric = True  # the simulated stage shapes both phases (a board may not: rp2_pulse.py)
        self._loads = loads
        self.last_commanded_ua = [0] * channels  # phase-1 current the last pulse asked for
        self.last_delivered_ua = [0] * channels  # what actually flowed (for the sense ADC)
        self.last_at_compliance = [False] * channels
        self.pulse_count = [0] * channels
        # per trace row (reset by the trace writer): pulses, largest phase charge, net charge
        self.row_pulses = [0] * channels
        self.row_max_charge_pc = [0] * channels
        self.row_net_pc = [0] * channels
        self.row_delivered_ua = [0] * channels
        self.overshoot = [False] * channels  # injected: the stage delivers more than commanded
        self.queue_full = False  # injected: every fire() is refused
        self.refused = [0] * channels  # fire() calls refused (queue full), per channel, cumulative
        self.recorder = None  # optional callable(ch, start_us, amp1, phase1, gap, amp2, phase2, delivered)

    def fire(self, ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us):
        if ch < 0 or ch >= self.channels:
            return False
        if self.queue_full:
            self.refused[ch] += 1
            return False
        # The driver clamps to what the stage can do, whatever it is asked.
        max_ua = self.hw_max_amp_ua
        if amp1_ua > max_ua:
            amp1_ua = max_ua
        if amp2_ua > max_ua:
            amp2_ua = max_ua
        if amp1_ua < 0:
            amp1_ua = 0
        if amp2_ua < 0:
            amp2_ua = 0
        max_us = self.hw_max_phase_us
        if phase1_us > max_us:
            phase1_us = max_us
        if phase2_us > max_us:
            phase2_us = max_us
        driven_ua = amp1_ua
        if self.overshoot[ch]:
            driven_ua = amp1_ua + amp1_ua // 2 + 5000
        load = self._loads[ch]
        delivered = load.drive(driven_ua, phase1_us)
        self.last_commanded_ua[ch] = amp1_ua
        if self.lead_us:
            done_us = self._clock.elapsed_ms * 1000 + self.lead_us + start_us + phase1_us + gap_us + phase2_us
            self._in_flight[ch].append((done_us, delivered, load.at_compliance))
        else:
            self.last_delivered_ua[ch] = delivered
            self.last_at_compliance[ch] = load.at_compliance
        self.pulse_count[ch] += 1
        self.row_pulses[ch] += 1
        charge_pc = amp1_ua * phase1_us
        row_max = self.row_max_charge_pc
        if charge_pc > row_max[ch]:
            row_max[ch] = charge_pc
        self.row_net_pc[ch] += charge_pc - amp2_ua * phase2_us
        self.row_delivered_ua[ch] = delivered
        recorder = self.recorder
        if recorder is not None:
            recorder(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us, delivered)
        return True

    def off(self):
        for ch in range(self.channels):
            self.last_commanded_ua[ch] = 0
            self.last_delivered_ua[ch] = 0
            self.last_at_compliance[ch] = False
            self._in_flight[ch] = []  # the board flushes the FIFO and stops the state machine

    def land(self, ch):
        """With lead_us: the pulses completed by now reach the sense (its peak-hold keeps the
        highest current; the comparator latch, any compliance)."""
        now_us = self._clock.elapsed_ms * 1000
        waiting = []
        for pulse in self._in_flight[ch]:
            if pulse[0] <= now_us:
                if pulse[1] > self.last_delivered_ua[ch]:
                    self.last_delivered_ua[ch] = pulse[1]
                if pulse[2]:
                    self.last_at_compliance[ch] = True
            else:
                waiting.append(pulse)
        self._in_flight[ch] = waiting

    def take_delivered(self, ch):
        """The current of the last pulse since the previous call (0 if none)."""
        value = self.last_delivered_ua[ch]
        self.last_delivered_ua[ch] = 0
        return value

    def reset_row(self, ch):
        self.row_pulses[ch] = 0
        self.row_max_charge_pc[ch] = 0
        self.row_net_pc[ch] = 0
        self.row_delivered_ua[ch] = 0


class SimOutputSense:
    def __init__(self, pulse_out, adc):
        self._pulse_out = pulse_out
        self._adc = adc
        self.broken = False  # injected: the ADC read raises
        self._compliance = [False] * pulse_out.channels

    def read_ua(self, ch):
        if self.broken:
            raise OSError("output-sense ADC not responding")
        pulse_out = self._pulse_out
        if pulse_out.lead_us:
            pulse_out.land(ch)
        at_compliance = pulse_out.last_at_compliance
        self._compliance[ch] = at_compliance[ch]
        at_compliance[ch] = False
        # pulse_out.take_delivered(ch), inlined (once per channel per tick)
        delivered = pulse_out.last_delivered_ua
        true_ua = delivered[ch]
        delivered[ch] = 0
        return self._adc.measure_ua(true_ua)

    def at_compliance(self, ch):
        """Whether the last pulse read by read_ua hit the compliance voltage."""
        return self._compliance[ch]


class SimSerial:
    """Device side of the serial line. The host side uses host_write/host_read."""

    def __init__(self, tx_capacity=SERIAL_TX_CAPACITY):
        self._rx = bytearray()  # host -> device
        self._tx = bytearray()  # device -> host
        self.tx_capacity = tx_capacity

    # device side (the Serial driver interface)
    def read_into(self, buf):
        if not self._rx:  # the usual tick: nothing from the host
            return 0
        count = min(len(buf), len(self._rx))
        if count:
            buf[:count] = self._rx[:count]
            self._rx = self._rx[count:]
        return count

    def write(self, data):
        room = self.tx_capacity - len(self._tx)
        count = min(room, len(data))
        if count > 0:
            self._tx.extend(data if count == len(data) else data[:count])  # no copy when all fits
            return count
        return 0

    # host side
    def host_write(self, data):
        self._rx.extend(data)

    def host_read(self):
        if not self._tx:
            return b""
        data = bytes(self._tx)
        self._tx = bytearray()
        return data


class SimHeater:
    """The heater switch as a lease: on only until the lease runs out, like the board's."""

    def __init__(self, clock):
        self._clock = clock
        self._until = 0
        self._leased = False

    def lease(self, duty_permille, lease_ms):
        self._leased = duty_permille > 0
        self._until = (self._clock._ticks + lease_ms) & _TICKS_MASK  # ticks_add(now, lease_ms), inlined

    def off(self):
        self._leased = False

    def on(self):
        # ticks_diff(self._until, self._clock.ticks_ms()) > 0, inlined: asked every tick
        return self._leased and ((self._until - self._clock._ticks + _TICKS_HALF) & _TICKS_MASK) > _TICKS_HALF


class SimStorage(RamStorage):
    """The flash filesystem as named byte logs (append and read, like the board's driver).
    `cut(name, size)` keeps only the first size bytes: a power cut in the middle of a write."""

    def cut(self, name, size):
        self.files[name] = self.files[name][:size]  # (MicroPython's bytearray has no slice deletion)


class SimBoard:
    def __init__(self, seed=1, start_ms=0, channels=2, pulse_lead_us=0):
        self.rng = Rng(seed)
        self.clock = VirtualClock(start_ms)
        self.loads = [ElectrodeLoad() for _ in range(channels)]
        self.nominal_series_ohm = self.loads[0].series_ohm
        self.pulse_out = SimPulseOutput(self.loads, channels, self.clock, pulse_lead_us)
        self.sense = SimOutputSense(self.pulse_out, SenseAdc(self.rng))
        self.serial = SimSerial()
        self.heater = SimHeater(self.clock)
        self.plant = PadPlant()
        # its own noise stream: adding the pad leaves the output-sense noise as it was
        self.pad_thermistor = ThermistorModel(rng=Rng(seed + 0x7E3A), plant=self.plant)
        self.storage = SimStorage()
        self.active_faults = []

    def advance(self, ms):
        """Move simulated time: the pad heats for `ms` as the heater switch stands, the sensor follows."""
        self.plant.step(ms, 1000 if self.heater.on() else 0)
        self.pad_thermistor.update(ms)
        self.clock.advance(ms)

    def build_device(self, device_id="pulsewarm-sim-0"):
        from firmware.device import Device

        return Device(
            self.clock, self.pulse_out, self.sense, self.serial, device_id, heater=self.heater,
            thermistor=self.pad_thermistor, storage=self.storage, random_bytes=self.random_bytes,
        )

    def random_bytes(self, count):
        """The board's random source (os.urandom there), here from the seeded generator: runs replay."""
        return bytes(self.rng.below(256) for _ in range(count))
