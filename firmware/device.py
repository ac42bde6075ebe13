"""Composition root: the firmware core over one set of drivers, one tick at a time.

`tick()` runs every TICK_MS: sensors -> supervisor checks -> controllers and
outputs -> protocol I/O. One deterministic function, no threads, no asyncio:
the same inputs at the same ticks give the same outputs on every runtime,
which is what lets the simulator replay and compare runs.
"""

import firmware
from firmware import envelope
from firmware import limits as L
from firmware import supervisor as sup
from firmware.clock import TICKS_MAX, Elapsed, ticks_diff
from firmware.link import Link
from firmware.lock import ClinicianLock
from firmware.clinic import Clinic
from firmware.program_run import ProgramRun
from firmware.program_store import ProgramStore
from firmware.ram_storage import RamStorage
from firmware.recorder import SAMPLE_EVERY_MS, Recorder
from firmware.session_log import SessionLog, UnreadableLog
from firmware.settings import Settings
from firmware.output_check import OutputMonitor
from firmware.protocols import frame, jsonenc
from firmware.protocols import messages as msg
from firmware.stim import BREACH, Channel
from firmware.telemetry import EVERY_MAX_MS, EVERY_MIN_MS, Telemetry

WINDOW_US = L.TICK_MS * 1000
INTERLOCK_CONCURRENT = "concurrent"  # heat and stimulation together
INTERLOCK_ALTERNATE = "alternate"  # never heat while any channel stimulates or is about to
INTERLOCKS = (INTERLOCK_CONCURRENT, INTERLOCK_ALTERNATE)
# The status reply fits one frame by construction. Outside FAULT it holds no fault and no message,
# and every other field is bounded (names by the program rules, numbers by their ranges: counters
# below 10^10, uptime below 2^30 s): under 960 bytes at the widest (tests/fw/test_status_size.py).
# In FAULT the room left for faults and message is measured: the first STATUS_FAULTS_MAX faults are
# listed (`faults_more` counts the rest) and the first fault's message takes what room is left, up
# to STATUS_FAULT_MSG_MAX bytes (ending in "..." when shortened).
STATUS_FAULTS_MAX = 4
STATUS_FAULT_MSG_MAX = 120  # bytes as sent (JSON-escaped); whole in the state event
STATUS_FAULT_MSG_MIN = 60  # fewer faults are listed before the message gets shorter than this
STATUS_SPARE_BYTES = 40  # every status frame leaves this free: room for a later field
# the reply's own additions around the fields: ,"id":<10 digits> and ,"ok":true, then @ *CRC \n
_REPLY_EXTRA_BYTES = len(',"id":%d,"ok":true' % msg.MAX_REQUEST_ID) + len("@*0000\n")
STATUS_FIELDS_MAX = frame.MAX_LINE_BYTES - STATUS_SPARE_BYTES - _REPLY_EXTRA_BYTES
EVENT_FAULT_MSG_MAX = 400  # bytes as sent: fault messages in state and heat events (the longest is under 300)
UNIX_S_MIN = 1000000000  # 2001: a hello's clock older than this is a host with no clock
UNIX_S_MAX = 0x7FFFFFFF


def _clock_bytes(clock):
    """Salt bytes for a board without a random source: distinct per call, not secret.
    The board passes os.urandom; the simulator its seeded generator."""
    state = [clock.ticks_ms() | 1]

    def random_bytes(count):
        out = bytearray(count)
        for i in range(count):
            state[0] = (state[0] * 1103515245 + 12345 + clock.ticks_ms()) & 0x7FFFFFFF
            out[i] = (state[0] >> 16) & 0xFF
        return bytes(out)

    return random_bytes


def clip_json(text, limit):
    """`text` as msg.clip makes it (printable ASCII, "..." at the end when cut), in at most `limit`
    bytes once JSON-escaped: a `"` or a backslash there takes two bytes."""
    if limit < 3:
        return ""
    text = msg.clip(text, limit)
    if len(text) + text.count('"') + text.count("\\") <= limit:
        return text
    budget = limit - 3  # the longest start that fits with "..." after it
    cut = 0
    for ch in text:
        budget -= 2 if ch == '"' or ch == "\\" else 1
        if budget < 0:
            break
        cut += 1
    return text[:cut] + "..."


class Device:
    def __init__(
        self, clock, pulse_out, sense, serial, device_id="pulsewarm-0000", heater=None, thermistor=None, storage=None,
        random_bytes=None,
    ):
        pulse_out.off()  # outputs off at boot, before anything else
        if storage is None:
            storage = RamStorage()  # records last until power-off
        self.heat = None  # a HeatController when the board has a pad (it turns the heater off at once)
        if heater is not None:
            from firmware.heat.heat import HeatController

            self.heat = HeatController(heater, thermistor)
        self.settings = Settings(storage)
        self.lock = ClinicianLock(storage, clock, random_bytes or _clock_bytes(clock))
        self.clinic = Clinic(self, ProgramStore(storage), self.lock)
        self.run = None  # the ProgramRun of this session, or None (a session set up by requests)
        self.maintenance = False  # for deployment: no stimulation, no heat (the board also drops its watchdog)
        # set by the board for a boot without its watchdog (maintenance): sessions wait for the
        # reboot into normal mode even once maintenance is off (the reboot comes a few ticks later)
        self.unguarded = False
        self.stop_held = False  # the board's STOP button is held: no session may start or resume
        self.interlock = self.settings.get("interlock_default")
        if self.heat is not None:
            self.heat.config.max_target_mc = self.settings.get("heat_max_target_mc")
        self._seen_heat_changes = 0
        self.telemetry = Telemetry()
        self.clock = clock
        self.pulse_out = pulse_out
        self.sense = sense
        self.device_id = device_id
        self.supervisor = sup.Supervisor()
        count = pulse_out.channels
        self.channels = [Channel(i) for i in range(count)]
        self.monitors = [OutputMonitor(i) for i in range(count)]
        self.delivered_ua = [0] * count
        self.uptime = Elapsed(clock.ticks_ms())
        try:
            log = SessionLog(storage)
        except msg.RequestError as err:  # the device works on; records are refused, never kept in RAM
            log = UnreadableLog(storage, err)
        self.recorder = Recorder(log, self.uptime, count)
        self.max_amp_ua = [0] * count  # the highest output of this session, per channel (for the log)
        self._sample_due = False
        self._recorded_state = sup.IDLE
        self._recorded_faults = 0  # faults latched when the log last heard of them
        self.ticks = 0
        self.stopping = False  # RUNNING, ramping down to a normal stop
        self.session_ms = L.SESSION_DEFAULT_MS
        self.session_run_ms = 0  # time spent RUNNING in this session
        self.lease_ms = 0  # 0: no host lease (a session timed by the device alone)
        self._lease_from = clock.ticks_ms()
        self._seen_changes = 0
        self.link = Link(
            serial,
            {
                msg.OP_HELLO: self._op_hello,
                msg.OP_STATUS: self._op_status,
                msg.OP_START: self._op_start,
                msg.OP_STOP: self._op_stop,
                msg.OP_ESTOP: self._op_estop,
                msg.OP_PAUSE: self._op_pause,
                msg.OP_RESUME: self._op_resume,
                msg.OP_SET_AMP: self._op_set_amp,
                msg.OP_AMP_STEP: self._op_amp_step,
                msg.OP_SET_STIM: self._op_set_stim,
                msg.OP_GET_STIM: self._op_get_stim,
                msg.OP_KEEPALIVE: self._op_keepalive,
                msg.OP_CLEAR_FAULT: self._op_clear_fault,
                msg.OP_HEAT: self._op_heat,
                msg.OP_TELEMETRY: self._op_telemetry,
                msg.OP_SETTINGS: self._op_settings,
                msg.OP_MAINTENANCE: self._op_maintenance,
            },
            clock,  # the time budget for handling lines in one tick
        )
        self.link.ops.update(self.clinic.handlers())
        self.link.on_request = self._before_request

    # ---- the tick -------------------------------------------------------

    def tick(self):
        """One control period. Never raises: an exception turns outputs off and latches a fault.

        Each group of checks, control and protocol I/O are guarded separately, so
        a driver that keeps raising turns the outputs off on every tick while the
        other checks go on (a broken output-sense ADC must not stop the heat
        checks from finding a stuck heater) and the host can still ask for
        status, hear about the fault and clear it.
        """
        now = self.clock.ticks_ms()  # the injected clock: counting, it cannot fail
        self.ticks = (self.ticks + 1) & TICKS_MAX  # a counter for tests and logs: wraps, stays a small int
        try:
            self.uptime.update(now)
            self._check_outputs()
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self._check_heat(now)
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self._check_timers(now)
            self._control()
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self.link.receive()
            self._heat_policy()  # requests of this tick (pause, stop, estop) hold the heater off now
        except Exception as exc:
            self._fail_safe_exception(exc)
        try:
            self._announce_state()
            if self.telemetry.due(self.clock.ticks_ms()):
                self.telemetry.count(self.link.send_optional(msg.event(msg.EV_TELEMETRY, self._telemetry_fields())))
        except Exception as exc:
            self._fail_safe_exception(exc)
        self.link.flush()

    # ---- hooks for the board's own inputs (firmware/board_entry.py) --------------------

    def emergency_stop(self):
        """The stop button: what the estop request does, output zero at once."""
        return self._op_estop({})

    def button_step(self, steps):
        """Amplitude up/down buttons: a step on every channel that stimulates, with the checks of
        an amp_step request (envelope, prescription, phase); a refused step changes nothing."""
        if not self.supervisor.running() or self.stopping:
            return 0
        if self.run is not None:
            candidates = self.channels[:len(self.run.program.channels)]  # the channels the program uses
        else:
            candidates = [channel for channel in self.channels if channel.target_ua > 0] or self.channels
        changed = 0
        for channel in candidates:
            if self._step_base_ua(channel) == 0 and steps < 0:
                continue
            try:
                self._op_amp_step({"ch": channel.index, "steps": steps})
                changed += 1
            except msg.RequestError:
                pass
        if changed:
            self._heat_policy()  # as for requests: `alternate` turns the heater off now, not next tick
        return changed

    def interrupt_outputs(self):
        """The loop stood still (a stall): nothing fired meanwhile, so output restarts from zero."""
        self._outputs_off()

    def fail_safe(self, exc):
        """A board driver outside the tick raised: outputs off and a latched fault the host can read."""
        self._fail_safe_exception(exc)

    def _fail_safe_exception(self, exc):
        # bounded, ASCII: the text goes into status replies and state events
        self._fail_safe(sup.F_INTERNAL, "exception in tick: " + msg.clip("%s %s" % (type(exc).__name__, exc), 100))

    def _fail_safe(self, fault, message):
        self.pulse_out.off()
        if self.heat is not None:
            self.heat.stop()
        for channel in self.channels:
            channel.interrupt()
        self.stopping = False
        self.supervisor.trip(fault, message)

    def _outputs_off(self):
        """An interruption: output zero now, targets kept, the next start ramps from zero."""
        self.pulse_out.off()
        for channel in self.channels:
            channel.off()
        for monitor in self.monitors:
            monitor.reset()  # a new run of pulses starts a new count
        self._heat_policy()

    def _heat_policy(self):
        """Heat follows the session: it heats only while RUNNING (and, with the `alternate`
        interlock, only while no channel stimulates or is about to); PAUSED holds it off
        with its timer running; IDLE and FAULT end it."""
        heat = self.heat
        if heat is None:
            return
        state = self.supervisor.state
        if state == sup.RUNNING:
            allowed = not (self.interlock == INTERLOCK_ALTERNATE and self._stimulating())
            if allowed != heat.allowed:
                heat.set_allowed(allowed)
        elif state == sup.PAUSED:
            if heat.allowed:
                heat.set_allowed(False)
        else:
            reason = self.supervisor.reason
            heat.stop(reason if reason == "session_end" or reason == "estop" else None)

    def _stimulating(self):
        """A channel outputs or is about to (a target while RUNNING ramps up next)."""
        for channel in self.channels:
            if channel.amp_ua or channel.target_ua:
                return True
        return False

    def _check_outputs(self):
        """Every read is checked. What status shows (`delivered_ua`) is the read of the channel's
        last pulse, held between pulses, and 0 while the channel outputs nothing: the sense's
        noise floor on an idle channel, or between pulses, is not a current delivered. A read saw
        a pulse when one was due and it found at least a quarter of it, or the compliance flag
        (a current source delivers less only at compliance)."""
        for i in range(len(self.channels)):
            shown_ua = self.delivered_ua[i]
            self.delivered_ua[i] = 0  # a failed read must not leave an old value on show
            delivered_ua = self.sense.read_ua(i)
            channel = self.channels[i]
            expected_ua = channel.sensed_ua()
            at_compliance = self.sense.at_compliance(i)
            if expected_ua > 0 and (delivered_ua * 4 >= expected_ua or at_compliance):
                shown_ua = delivered_ua
            elif expected_ua == 0 and channel.amp_ua == 0:
                shown_ua = 0
            self.delivered_ua[i] = shown_ua
            monitor = self.monitors[i]
            if monitor.check(expected_ua, delivered_ua, at_compliance):
                self._fail_safe(monitor.fault, monitor.message)

    def _check_heat(self, now):
        heat = self.heat
        if heat is None:
            return
        found = heat.tick(now)
        if found is not None:
            self._fail_safe(found, heat.found_msg)

    def _check_timers(self, now):
        if self.supervisor.state != sup.RUNNING:
            return
        self.session_run_ms += L.TICK_MS
        if self.session_run_ms % SAMPLE_EVERY_MS == 0:
            self._sample_due = True
        run = self.run
        if run is not None and not self.stopping:
            index = run.phase_due(self.session_run_ms)
            if index >= 0:
                run.enter_phase(index, self.channels, self.heat, self.recorder, now)
        if self.lease_ms and ticks_diff(now, self._lease_from) > self.lease_ms:
            if self.stopping:
                self._end_stop_now()  # a stop under way is never turned into a pause
            else:
                self.supervisor.pause(sup.PAUSE_LEASE)
                self._outputs_off()
        elif self.session_run_ms >= self.session_ms and not self.stopping:
            self._begin_stop()
            self.supervisor.reason = "session_end"

    def _control(self):
        if not self.supervisor.running():
            self._outputs_off()
            return
        self._heat_policy()  # before any pulse of this tick: `alternate` turns the heater off first
        idle = True
        for channel in self.channels:
            channel.ramp()
            if channel.fire_window(self.pulse_out, WINDOW_US) == BREACH:
                self._fail_safe(
                    "%s:%d" % (sup.F_ENVELOPE, channel.index),
                    "channel %d: a pulse would have left the validated envelope" % channel.index,
                )
                return
            if channel.amp_ua:
                idle = False
                if channel.amp_ua > self.max_amp_ua[channel.index]:
                    self.max_amp_ua[channel.index] = channel.amp_ua
        if self.stopping and idle:
            self._end_stop_now()

    def _end_stop_now(self):
        """The stop under way ends now, in IDLE, with its own reason (`stop` or `session_end`):
        at the end of its ramp, or cut short when the lease runs out or a pause comes while it
        ramps. A stop, once begun, always ends this way: nothing turns it into a pause that a
        resume could undo (only a fault or an estop, which end the session themselves)."""
        self.stopping = False
        reason = self.supervisor.reason
        self.supervisor.to_idle(reason if reason == "session_end" else "stop")
        # leaving RUNNING: the driver is off in the same tick, as on every other exit; IDLE first,
        # so the heat policy ends heat now (a start later in this tick must not inherit it)
        self._outputs_off()

    def _begin_stop(self):
        self.stopping = True
        for channel in self.channels:
            channel.target_ua = 0

    def _before_request(self, op):
        """Any valid request renews the lease. First the session log catches up: a session that
        ended earlier in this tick (a fault, an estop) gets its fault and stop records, with its
        own reason, before this request can clear the fault or start the next session."""
        self._record_session()
        self._lease_from = self.clock.ticks_ms()

    def _announce_state(self):
        self._record_session()
        heat = self.heat
        if heat is not None and heat.changes != self._seen_heat_changes:
            self._seen_heat_changes = heat.changes
            if self.recorder.open and heat.ended_by_itself():
                self.recorder.heat(None)  # requests and phases that turn heat off record it themselves
            self.link.send(msg.event(msg.EV_HEAT, self._heat_event(heat)))
        if self.supervisor.changes != self._seen_changes:
            self._seen_changes = self.supervisor.changes
            self.link.send(
                msg.event(
                    msg.EV_STATE,
                    {
                        "state": self.supervisor.state_name,
                        "reason": self.supervisor.reason,
                        "faults": list(self.supervisor.faults),  # at most every fault name there is: 17
                        "fault_msg": clip_json(self.supervisor.fault_msg, EVENT_FAULT_MSG_MAX),
                    },
                )
            )

    def _heat_event(self, heat):
        return {
            "state": heat.state,
            "reason": heat.reason,
            "target_mc": heat.target_mc,
            "fault": heat.fault,
            "fault_msg": clip_json(heat.fault_msg, EVENT_FAULT_MSG_MAX),
        }

    @property
    def program(self):
        """The Program this session runs, or None."""
        return self.run.program if self.run is not None else None

    def channel_count(self):
        return len(self.channels)

    def check_waveform(self, setting, where):
        """An output stage that cannot shape asymmetric pulses says so (PulseOutput.asymmetric):
        its symmetric stand-in would carry more r.m.s. current than the envelope validated."""
        if setting.waveform == "asymmetric" and not getattr(self.pulse_out, "asymmetric", True):
            raise msg.RequestError(
                msg.E_BAD_FIELD, "%s: this device's output stage makes symmetric pulses only (waveform asymmetric)" % where
            )

    def check_program_waveforms(self, program):
        for i in range(len(program.channels)):
            self.check_waveform(program.channels[i].setting, "channels[%d].stim" % i)

    def fault_cause(self):
        """Why a fault cannot be cleared yet, or None when its causes are gone."""
        for i in range(len(self.channels)):
            try:
                delivered_ua = self.sense.read_ua(i)
            except Exception as exc:
                return "output-sense read on channel %d fails: %s" % (i, msg.clip("%s %s" % (type(exc).__name__, exc), 60))
            if delivered_ua > L.SENSE_MIN_CHECK_UA:
                return "channel %d: %d uA flows with the output off" % (i, delivered_ua)
        return None

    # ---- requests -----------------------------------------------------------

    def _channel(self, message):
        return self.channels[msg.int_field(message, "ch", 0, len(self.channels) - 1)]

    def _refuse_in_fault(self, what):
        if self.supervisor.state == sup.FAULT:
            raise msg.RequestError(
                msg.E_BAD_STATE, "cannot %s: fault %s latched; send clear_fault first" % (what, self.supervisor.faults[0])
            )

    def _op_hello(self, message):
        if "proto" in message:
            major, minor = msg.parse_version(message["proto"])
            if major not in msg.SUPPORTED_MAJORS:
                raise msg.RequestError(
                    msg.E_VERSION,
                    "host speaks protocol %d.%d; this device speaks %s (majors %s)"
                    % (major, minor, msg.PROTO_VERSION, list(msg.SUPPORTED_MAJORS)),
                )
        if "unix_s" in message:  # the host's clock: session records get calendar times
            self.recorder.set_time(msg.int_field(message, "unix_s", UNIX_S_MIN, UNIX_S_MAX))
        self.telemetry.set_rate(0, self.clock.ticks_ms())  # a new host asks for what it wants
        # A hello does not disturb a running session: observers (tensctl status) connect
        # freely. A controlling host that was gone longer than its lease finds the session
        # PAUSED (lease_expired), and resuming ramps from zero; one that had begun a stop finds it
        # done (IDLE).
        return {
            "proto": msg.PROTO_VERSION,
            "proto_majors": list(msg.SUPPORTED_MAJORS),
            "fw": firmware.FIRMWARE_VERSION,
            "device_id": self.device_id,
            "channels": len(self.channels),
            "amp_limit_ua": L.AMP_LIMIT_UA,
            "amp_step_ua": L.AMP_STEP_UA,
            "tick_ms": L.TICK_MS,
            "lease_ms": self.settings.get("lease_default_ms"),  # what a start without lease_ms gets now
            "session_max_ms": L.SESSION_MAX_MS,
        }

    def status(self):
        channels = []
        for i in range(len(self.channels)):
            channel = self.channels[i]
            channels.append(
                {
                    "amp_ua": channel.amp_ua,
                    "target_ua": channel.target_ua,
                    "max_amp_ua": channel.max_amp_ua,
                    "delivered_ua": self.delivered_ua[i],
                    "mode": channel.setting.mode,
                    "phase_us": channel.phase_us,
                    "rate_hz": channel.rate_hz,
                    # the output indicator (IEC 60601-2-10): lit above 10 mA r.m.s. or 10 mJ into 1 kohm
                    "indicator": channel.amp_ua > 0 and envelope.Envelope(channel.setting, channel.amp_ua).indicator,
                }
            )
        left_ms = self.session_ms - self.session_run_ms if self.supervisor.state in (sup.RUNNING, sup.PAUSED) else 0
        fields = {
            "state": self.supervisor.state_name,
            "reason": self.supervisor.reason,
            "stopping": self.stopping,
            "faults": [],
            "fault_msg": "",
            "uptime_ms": self.uptime.total_ms,
            "session_left_ms": left_ms if left_ms > 0 else 0,
            "lease_ms": self.lease_ms,
            "ch": channels,
            "rx_errors": self.link.rx_errors,
            "tx_dropped": self.link.tx_dropped,
            "maintenance": self.maintenance,
            "telemetry_ms": self.telemetry.every_ms,
            "telemetry_dropped": self.telemetry.dropped,
            "interlock": self.interlock,
            "heat": self._heat_status(),
            # patient mode and log write errors: the programs and log_info replies (status is near its frame)
            "program": self.run.program.name if self.run is not None else None,
            "phase": self.run.phase.name if self.run is not None else None,
        }
        if self.supervisor.faults:
            self._status_faults(fields, self.supervisor.faults, self.supervisor.fault_msg)
        return fields

    def _status_faults(self, fields, faults, text):
        """Faults and the first fault's message into the status fields, in the room the frame has
        left (measured: a request, and in FAULT only, so the tick is not slowed). The first faults
        in latch order, at most STATUS_FAULTS_MAX and fewer while the message would get shorter than
        STATUS_FAULT_MSG_MIN; `faults_more` (only then present) counts those left out."""
        shown = len(faults) if len(faults) < STATUS_FAULTS_MAX else STATUS_FAULTS_MAX
        while True:
            fields["faults"] = faults[:shown]
            if shown < len(faults):
                fields["faults_more"] = len(faults) - shown
            room = STATUS_FIELDS_MAX - len(jsonenc.encode(fields))  # fault_msg "" counted already
            if room >= STATUS_FAULT_MSG_MIN or shown == 1:
                break
            shown -= 1
        fields["fault_msg"] = clip_json(text, room if room < STATUS_FAULT_MSG_MAX else STATUS_FAULT_MSG_MAX)

    def _heat_status(self):
        if self.heat is None:
            return None
        fields = self.heat.status()
        del fields["duty_permille"]  # heater_duty_pct says it; the status reply stays inside one frame
        return fields

    def _telemetry_fields(self):
        """A compact status: what a live view redraws (kept well inside one frame)."""
        amp_ua = []
        target_ua = []
        for channel in self.channels:
            amp_ua.append(channel.amp_ua)
            target_ua.append(channel.target_ua)
        left_ms = self.session_ms - self.session_run_ms if self.supervisor.state in (sup.RUNNING, sup.PAUSED) else 0
        fields = {
            "n": self.telemetry.seq,
            "dropped": self.telemetry.dropped,
            "uptime_ms": self.uptime.total_ms,
            "state": self.supervisor.state_name,
            "faults": list(self.supervisor.faults),
            "amp_ua": amp_ua,
            "target_ua": target_ua,
            "delivered_ua": list(self.delivered_ua),
            "session_left_ms": left_ms if left_ms > 0 else 0,
            "heat": None,
        }
        heat = self.heat
        if heat is not None:
            fields["heat"] = {
                "state": heat.state,
                "target_mc": heat.target_mc,
                "measured_mc": heat.reading_mc(),
                "heater_duty_pct": heat.duty_permille // 10,
                "cem43_ms": heat.dose.cem43_ms,
            }
        return fields

    def _op_telemetry(self, message):
        """Periodic telemetry events every `every_ms` (0 turns them off); a hello turns them off."""
        every_ms = msg.int_field_or_zero(message, "every_ms", EVERY_MIN_MS, EVERY_MAX_MS, "off")
        self.telemetry.set_rate(every_ms, self.clock.ticks_ms())
        return {"every_ms": every_ms}

    def _op_status(self, message):
        return self.status()

    def _op_keepalive(self, message):
        return {"state": self.supervisor.state_name}

    def _op_start(self, message):
        """Start a session: a program by name, or (clinician) the channels as they are set."""
        program = None
        if "program" in message:
            program = self.clinic.load_program(message["program"])
            for name in ("session_ms", "ramp_ms", "interlock"):
                if name in message:
                    raise msg.RequestError(msg.E_BAD_FIELD, "%s comes from the program; leave it out" % name)
            targets = ProgramRun(program).start_targets(message)
        else:
            self.clinic.require_clinician(message, "start a session without a program")
            targets = self._targets(message)
        self._refuse_in_maintenance("start")
        settings = self.settings
        if program is not None:
            session_ms = program.session_ms
            ramp_ms = program.ramp_ms or settings.get("ramp_default_ms")
            interlock = program.interlock or settings.get("interlock_default")
        else:
            session_ms = msg.int_field(message, "session_ms", 1000, L.SESSION_MAX_MS, settings.get("session_default_ms"))
            ramp_ms = msg.int_field(message, "ramp_ms", L.RAMP_MIN_MS, L.RAMP_MAX_MS, settings.get("ramp_default_ms"))
            interlock = message.get("interlock", settings.get("interlock_default"))
        lease_ms = msg.int_field_or_zero(
            message, "lease_ms", L.LEASE_MIN_MS, L.LEASE_MAX_MS, "no host lease", settings.get("lease_default_ms")
        )
        if interlock not in INTERLOCKS:
            raise msg.RequestError(
                msg.E_BAD_FIELD, "interlock %s is not one of %s" % (msg._show(interlock), ", ".join(INTERLOCKS))
            )
        self.supervisor.start()  # from IDLE only (the last session's records are closed: _before_request)
        self.interlock = interlock
        if self.heat is not None and self.heat.state == "off":
            self.heat.reset_dose()  # a new dose account after an hour without heat, else it goes on
        self.session_ms = session_ms
        self.session_run_ms = 0
        self.lease_ms = lease_ms
        self.stopping = False
        self._lease_from = self.clock.ticks_ms()
        self.run = ProgramRun(program) if program is not None else None
        for i in range(len(self.channels)):
            channel = self.channels[i]
            self.max_amp_ua[i] = 0
            if program is not None:
                plan = program.channels[i] if i < len(program.channels) else None
                channel.apply_setting(plan.setting if plan is not None else channel.setting)
            channel.off()
            channel.ramp_ms = ramp_ms
            if i < len(targets):
                channel.set_target(targets[i])
            elif program is not None:
                channel.set_target(0)
            else:
                channel.set_target(channel.target_ua)
        heat = None
        if program is not None and program.has_heat:
            heat = {"level": program.heat_level, "target_mc": program.heat_target_mc}
        self.recorder.start(
            program.name if program is not None else None, session_ms, [ch.target_ua for ch in self.channels],
            heat, interlock,
        )
        if program is None:
            return {"state": self.supervisor.state_name}
        self.run.enter_phase(0, self.channels, self.heat, self.recorder, self.clock.ticks_ms())
        return {"state": self.supervisor.state_name, "program": program.name, "session_ms": session_ms}

    def _close_session(self):
        """The session's last records: an end sample and the stop (with the fault, if one ended it)."""
        recorder = self.recorder
        state = self.supervisor.state
        if state == sup.FAULT:
            recorder.fault(list(self.supervisor.faults), self.supervisor.fault_msg)
        self._record_sample()
        heat = self.heat
        recorder.stop(
            "fault" if state == sup.FAULT else self.supervisor.reason, self.session_run_ms, list(self.max_amp_ua),
            heat.dose.cem43_ms if heat is not None else 0,
        )
        self.run = None

    def _record_sample(self):
        heat = self.heat
        temp_mc = None
        target_mc = None
        if heat is not None:
            temp_mc = heat.reading_mc()
            target_mc = heat.target_mc if heat.state != "off" else None
        self.recorder.sample(self.session_run_ms, [channel.amp_ua for channel in self.channels], temp_mc, target_mc)

    def _record_session(self):
        """Once a tick, after control and requests: samples, and the end of a session."""
        state = self.supervisor.state
        if self.recorder.open:
            if self.recorder.waiting:
                self.recorder.write_waiting()
            if self._sample_due:
                self._sample_due = False
                self._record_sample()
            if state == sup.IDLE or state == sup.FAULT:
                self._close_session()
        elif state == sup.FAULT and self._recorded_state != sup.FAULT:
            self.recorder.fault(list(self.supervisor.faults), self.supervisor.fault_msg)
        elif state == sup.FAULT and len(self.supervisor.faults) != self._recorded_faults:
            # a further fault while latched (a stuck heater's pad past the cutoff): into the log too
            self.recorder.fault(list(self.supervisor.faults), self.supervisor.latest_msg)
        self._recorded_state = state
        self._recorded_faults = len(self.supervisor.faults)

    def _targets(self, message):
        """Optional "amp_ua": one integer per channel, each inside its channel's envelope."""
        if "amp_ua" not in message:
            return []
        values = message["amp_ua"]
        if not isinstance(values, list) or len(values) > len(self.channels):
            raise msg.RequestError(
                msg.E_BAD_FIELD, "amp_ua must be a list of up to %d integers, one per channel, got %s"
                % (len(self.channels), msg._show(values))
            )
        for i in range(len(values)):
            amp_ua = msg.channel_amp(values, i, L.AMP_LIMIT_UA)
            try:
                envelope.check(self.channels[i].setting, amp_ua)
            except msg.RequestError as err:
                raise msg.RequestError(err.code, "%s, on channel %d" % (err.message, i))  # the limit's name first
        return values

    def _op_stop(self, message):
        """Normal stop: ramp down, then IDLE. From PAUSED there is nothing to ramp."""
        state = self.supervisor.state
        if state == sup.RUNNING:
            self._begin_stop()
            self.supervisor.reason = "stop"
        elif state == sup.PAUSED:
            self.supervisor.to_idle("stop")
            self._outputs_off()  # IDLE first: heat ends with the session, in this request
        return {"state": self.supervisor.state_name, "stopping": self.stopping}

    def _op_estop(self, message):
        """Emergency stop: zero output at once, no ramp, targets forgotten."""
        self.pulse_out.off()
        for channel in self.channels:
            channel.interrupt()
        self.stopping = False
        self.supervisor.to_idle("estop")
        self._heat_policy()  # heat ends with the session, now
        return {"state": self.supervisor.state_name}

    def _op_pause(self, message):
        """RUNNING -> PAUSED, output zero now. While a stop ramps down, the output is cut the
        same way and the stop completes (IDLE): a pause must not let a resume undo a stop."""
        if self.stopping and self.supervisor.running():
            self._end_stop_now()
            return {"state": self.supervisor.state_name}
        self.supervisor.pause(sup.PAUSE_REQUEST)
        self._outputs_off()
        return {"state": self.supervisor.state_name}

    def _op_resume(self, message):
        self._refuse_in_maintenance("resume")
        self.supervisor.resume()
        self._lease_from = self.clock.ticks_ms()
        for channel in self.channels:
            channel.off()  # ramp from zero
        return {"state": self.supervisor.state_name}

    def _set_target(self, channel, amp_ua, message):
        if amp_ua > channel.target_ua and self.run is None and self.supervisor.state == sup.IDLE:
            # a target set with no session carries into the next one: in patient mode only a
            # clinician sets one (a program's own maximum holds once it runs); lowering is free
            self.clinic.require_clinician(message, "raise a target with no session running")
        if self.stopping and amp_ua > channel.target_ua:
            # a stop (or the session timer) is ramping down: raising now would undo it
            raise msg.RequestError(
                msg.E_BAD_STATE, "cannot raise amplitude: stopping (%s), ramping down to IDLE" % self.supervisor.reason
            )
        if self.run is not None:
            self.run.check_amp_request(channel.index, amp_ua)
        envelope.check(channel.setting, amp_ua)
        channel.set_target(amp_ua)
        if self.run is not None:
            self.run.target_set(channel.index, amp_ua)
        if self.recorder.open:
            self.recorder.amp(channel.index, channel.target_ua)
        return {"ch": channel.index, "target_ua": channel.target_ua}

    def _op_set_amp(self, message):
        channel = self._channel(message)
        amp_ua = msg.int_field(message, "amp_ua", 0, L.AMP_LIMIT_UA)
        self._refuse_in_fault("set amplitude")
        return self._set_target(channel, amp_ua, message)

    def _op_amp_step(self, message):
        channel = self._channel(message)
        steps = msg.int_field(message, "steps", -L.AMP_STEPS_MAX, L.AMP_STEPS_MAX)
        self._refuse_in_fault("change amplitude")
        amp_ua = self._step_base_ua(channel) + steps * L.AMP_STEP_UA
        if amp_ua < 0:
            amp_ua = 0
        if amp_ua > L.AMP_LIMIT_UA:
            raise msg.RequestError(
                msg.E_OUT_OF_RANGE, "amp_ua %d exceeds the limit %d" % (amp_ua, L.AMP_LIMIT_UA)
            )
        return self._set_target(channel, amp_ua, message)

    def _step_base_ua(self, channel):
        """Where an amplitude step starts: the channel's target, or while a program enters a TENS
        phase, the patient's amplitude that is about to come back."""
        if self.run is not None:
            return self.run.target_ua(channel)
        return channel.target_ua

    def _op_set_stim(self, message):
        channel = self._channel(message)
        setting = envelope.parse_setting(message.get("stim"))
        self.check_waveform(setting, "stim")
        self.clinic.require_clinician(message, "change the stimulation setting")
        if self.run is not None:
            raise msg.RequestError(
                msg.E_BAD_STATE, "program %s sets the stimulation; stop it first" % self.run.program.name
            )
        self._refuse_in_fault("change the stimulation setting")
        envelope.check(setting, channel.target_ua)
        channel.apply_setting(setting)  # a program change: output restarts from zero
        return self._stim_reply(channel)

    def _op_get_stim(self, message):
        return self._stim_reply(self._channel(message))

    def _stim_reply(self, channel):
        setting = channel.setting
        return {
            "ch": channel.index,
            "stim": setting.to_dict(),
            "max_amp_ua": channel.max_amp_ua,
            "binding_limit": envelope.binding_limit(setting),
            "envelope": envelope.Envelope(setting, channel.target_ua).to_dict(),
            "envelope_at_max": envelope.Envelope(setting, channel.max_amp_ua).to_dict(),
        }

    def _op_heat(self, message):
        """Heat on at a level or a target (optional minutes), or off. Heat runs inside a
        session: it needs RUNNING to start, and the session's end ends it. A refused
        request changes nothing."""
        heat = self.heat
        if heat is None:
            raise msg.RequestError(msg.E_BAD_STATE, "this device has no heat pad")
        if "off" in message:
            if message["off"] is not True:
                raise msg.RequestError(msg.E_BAD_FIELD, "off must be true (heat off), got %s" % msg._show(message["off"]))
            heat.stop()
            if self.recorder.open:
                self.recorder.heat(None)
            return heat.status()
        if "level" in message and "target_mc" in message:
            raise msg.RequestError(msg.E_BAD_FIELD, "give level or target_mc, not both")
        max_minutes = heat.config.auto_off_max_ms // 60000
        minutes = msg.int_field(message, "minutes", 1, max_minutes, self.settings.get("heat_minutes_default"))
        self._refuse_in_fault("heat")
        self._refuse_in_maintenance("heat")
        if self.lock.has_pin:
            if self.run is None:
                raise msg.RequestError(
                    msg.E_LOCKED, "patient mode: heat comes only with a prescribed program that has heat"
                )
            self.run.check_patient_heat(heat, message)
        state = self.supervisor.state
        if state == sup.PAUSED:
            raise msg.RequestError(msg.E_BAD_STATE, "heat waits while the session is PAUSED: resume first")
        if state != sup.RUNNING:
            raise msg.RequestError(
                msg.E_BAD_STATE, "heat runs in a session: start one first (state %s)" % self.supervisor.state_name
            )
        if self.stopping:  # a stop ends the session and its heat: nothing may start or go on anew
            raise msg.RequestError(msg.E_BAD_STATE, "the session is stopping: heat ends with it")
        heating = heat.state != "off"
        if heating and "minutes" in message and heat.session_ms + minutes * 60000 > heat.config.auto_off_max_ms:
            raise msg.RequestError(
                msg.E_OUT_OF_RANGE,
                "heat has run %d s of the limit %d min in all: %d min more is too long (at most %d)"
                % (heat.session_ms // 1000, max_minutes, minutes, (heat.config.auto_off_max_ms - heat.session_ms) // 60000),
            )
        old_level, old_target_mc = heat.level, heat.target_mc
        if "level" in message:
            heat.set_level(message["level"])  # validates before it changes anything
        elif "target_mc" in message:
            heat.set_target_mc(message["target_mc"])
        elif not heating:
            self._default_heat_target(heat)  # the documented default, never the last session's
        if heating:
            if "minutes" in message:
                heat.duration_ms = heat.session_ms + minutes * 60000  # minutes from now
        else:
            try:
                heat.start(self.clock.ticks_ms(), minutes * 60000)
            except msg.RequestError:
                heat.level, heat.target_mc = old_level, old_target_mc
                raise
        if self.recorder.open:
            self.recorder.heat(heat.target_mc)
        return heat.status()

    def _default_heat_target(self, heat):
        """What heat without a level or target starts at: a running program's own heat, else the
        configured default level (medium). Validates before it changes anything."""
        program = self.run.program if self.run is not None else None
        if program is None or not program.has_heat:
            heat.set_level(heat.config.default_level)
        elif program.heat_level is not None:
            heat.set_level(program.heat_level)
        else:
            heat.set_target_mc(program.heat_target_mc)

    def _refuse_in_maintenance(self, what):
        if self.maintenance:
            raise msg.RequestError(
                msg.E_BAD_STATE, "cannot %s: maintenance mode (send maintenance with on false, or restart)" % what
            )
        if self.unguarded:
            raise msg.RequestError(
                msg.E_BAD_STATE, "cannot %s: this boot runs without the watchdog (maintenance); the device "
                "restarts into normal mode after maintenance off" % what
            )
        if self.stop_held:
            raise msg.RequestError(msg.E_BAD_STATE, "cannot %s: the STOP button is held; let go of it first" % what)

    def _op_maintenance(self, message):
        """Enter (IDLE only) or leave maintenance mode: no session may start while in it."""
        on = message.get("on")
        if on is not True and on is not False:
            raise msg.RequestError(msg.E_BAD_FIELD, "on must be true or false, got %s" % msg._show(on))
        if on:
            self.clinic.require_clinician(message, "enter maintenance mode")
        if on and self.supervisor.state != sup.IDLE:
            raise msg.RequestError(
                msg.E_BAD_STATE, "maintenance mode needs IDLE (state %s): %s first"
                % (self.supervisor.state_name, "send clear_fault" if self.supervisor.state == sup.FAULT else "stop"),
            )
        self.maintenance = on
        return {"maintenance": on}

    def _op_settings(self, message):
        """Without "set": the settings and their limits. With "set": change them, all or nothing."""
        if "set" in message:
            self.clinic.require_clinician(message, "change settings")
            self.settings.change(message["set"])
            if self.heat is not None:
                self._apply_heat_cap(self.settings.get("heat_max_target_mc"))
        return {"settings": self.settings.to_dict(), "limits": self.settings.limits()}

    def _apply_heat_cap(self, cap_mc):
        heat = self.heat
        heat.config.max_target_mc = cap_mc
        if heat.target_mc > cap_mc:
            heat.set_target_mc(cap_mc)  # a running heat session drops to the new cap at once

    def _op_clear_fault(self, message):
        if self.supervisor.state == sup.FAULT:
            if self.supervisor.changes != self._seen_changes:
                # latched in this very tick: the host has not heard of it yet, and a clear it
                # sent before knowing would make the fault vanish without a state event
                raise msg.RequestError(
                    msg.E_BAD_STATE,
                    "cannot clear the fault yet: %s latched in this tick; clear it after its state event"
                    % ", ".join(self.supervisor.faults),
                )
            cause = self.fault_cause()
            if cause is not None:
                raise msg.RequestError(msg.E_BAD_STATE, "cannot clear the fault yet: " + cause)
            if self.heat is not None and self.heat.fault:
                self.heat.clear_fault()  # refused (RequestError) while the pad reads at or above the cutoff
        self.supervisor.clear()
        for monitor in self.monitors:
            monitor.reset()
        for channel in self.channels:
            channel.interrupt()
        return {"state": self.supervisor.state_name}
