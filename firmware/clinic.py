"""The clinic's requests: programs (presets and uploads), the session log, pain scores and
the clinician PIN.

They share one rule, kept here: in patient mode (a PIN is set) a request that changes
what a patient may do must carry the PIN, and no reply ever echoes it.
"""

from firmware import presets
from firmware.program import parse_program
from firmware.protocols import messages as msg

LOG_FETCH_MAX_BYTES = 640  # records per log_fetch reply: with its envelope, one 1024-byte frame
# `pain` needs no PIN, so a flood of scores could rotate every therapy record out of the log (whose
# erase needs the PIN). A patient gives a score before and after a session and corrects one now
# and then: at most PAIN_PER_HOUR scores in any hour and PAIN_PER_DAY in any 24 hours of uptime
# (the device has no clock of its own) are far above that, and make a flood take months.
PAIN_PER_HOUR = 6
PAIN_PER_DAY = 24
_HOUR_S = 3600
_DAY_S = 86400


class Clinic:
    def __init__(self, device, store, lock):
        self.device = device  # the composition root: settings, heat, recorder, the running program
        self.store = store  # a ProgramStore
        self.lock = lock  # a ClinicianLock
        self._pain_s = []  # uptime seconds of the pain scores recorded in the last day, oldest first

    def handlers(self):
        return {
            msg.OP_PROGRAMS: self._op_programs,
            msg.OP_PROGRAM_GET: self._op_program_get,
            msg.OP_PROGRAM_PUT: self._op_program_put,
            msg.OP_PROGRAM_DELETE: self._op_program_delete,
            msg.OP_LOG_INFO: self._op_log_info,
            msg.OP_LOG_FETCH: self._op_log_fetch,
            msg.OP_LOG_ERASE: self._op_log_erase,
            msg.OP_PAIN: self._op_pain,
            msg.OP_PIN: self._op_pin,
        }

    def require_clinician(self, message, what):
        """Patient mode (a PIN is set): the request must carry the PIN. The PIN is never echoed."""
        try:
            self.lock.check(message.get("pin"))
        except msg.RequestError as exc:
            raise msg.RequestError(exc.code, "cannot %s: %s" % (what, exc.message))

    def _parse(self, source):
        """Check a program against this device: its channels, heat cap and default ramp time (a
        program without ramp_ms runs with the ramp_default_ms setting)."""
        settings = self.device.settings
        return parse_program(
            source, self.device.channel_count(), settings.get("heat_max_target_mc"), settings.get("ramp_default_ms")
        )

    def _op_programs(self, message):
        return {"presets": presets.names(), "stored": self.store.names(), "patient_mode": self.lock.has_pin}

    def _op_program_get(self, message):
        name = message.get("name")
        if not isinstance(name, str):
            raise msg.RequestError(msg.E_BAD_FIELD, "name must be a program name, got %s" % msg._show(name))
        if name in self.store.names():
            return {"program": self.store.get(name), "preset": False}
        preset = presets.find(name)
        if preset is None:
            raise msg.RequestError(msg.E_NOT_FOUND, "no program named %s" % msg._show(name))
        return {"program": parse_program(preset, self.device.channel_count()).source, "preset": True}

    def _op_program_put(self, message):
        """Upload (clinician): checked here against this device's channels and heat cap, whatever
        the host checked before."""
        self.require_clinician(message, "upload a program")
        program = self._parse(message.get("program"))
        self.device.check_program_waveforms(program)
        if presets.find(program.name) is not None:
            raise msg.RequestError(
                msg.E_BAD_FIELD, "name %s is a built-in preset; upload it under another name" % program.name
            )
        if self.device.program is not None and self.device.program.name == program.name:
            raise msg.RequestError(msg.E_BAD_STATE, "program %s is running; stop it before replacing it" % program.name)
        self.store.put(program.source)
        return {"name": program.name, "session_s": program.session_ms // 1000, "stored": len(self.store.names())}

    def _op_program_delete(self, message):
        self.require_clinician(message, "delete a program")
        name = message.get("name")
        if self.device.program is not None and self.device.program.name == name:
            raise msg.RequestError(msg.E_BAD_STATE, "program %s is running; stop it before deleting it" % name)
        if not isinstance(name, str):
            raise msg.RequestError(msg.E_BAD_FIELD, "name must be a program name, got %s" % msg._show(name))
        self.store.delete(name)
        return {"name": name, "stored": len(self.store.names())}

    def _op_log_info(self, message):
        info = self.device.recorder.log.info()
        info["clock_set"] = self.device.recorder.unix_offset_s is not None
        info["write_errors"] = self.device.recorder.errors
        return info

    def _op_log_fetch(self, message):
        """A page of records from `from_seq` on: the host asks again with `next_seq` until it
        passes `last_seq`."""
        from_seq = msg.int_field(message, "from_seq", 0, msg.MAX_REQUEST_ID, 1)
        max_bytes = msg.int_field(message, "max_bytes", 100, LOG_FETCH_MAX_BYTES, LOG_FETCH_MAX_BYTES)
        log = self.device.recorder.log
        records, next_seq = log.read(from_seq, max_bytes)
        return {"records": records, "next_seq": next_seq, "last_seq": log.info()["last_seq"]}

    def _op_log_erase(self, message):
        self.require_clinician(message, "erase the session log")
        if self.device.recorder.open:
            raise msg.RequestError(msg.E_BAD_STATE, "cannot erase the session log during a session: stop it first")
        self.device.recorder.log.erase()
        return self.device.recorder.log.info()

    def _op_pain(self, message):
        """A pain score (0 none .. 10 worst) before or after a session, for the therapist's report."""
        score = msg.int_field(message, "score", 0, 10)
        when = message.get("when")
        if when != "before" and when != "after":
            raise msg.RequestError(msg.E_BAD_FIELD, "when must be before or after, got %s" % msg._show(when))
        now = self.device.uptime.seconds  # a small int for 34 years, unlike total_ms
        self._check_pain_rate(now)
        recorder = self.device.recorder
        seq = recorder.pain(when, score)
        if seq is None:
            raise msg.RequestError(msg.E_STORAGE, "pain score not recorded: " + recorder.last_error)
        self._pain_s.append(now)
        return {"seq": seq, "when": when, "score": score}

    def _check_pain_rate(self, now):
        """E_TRY_LATER naming the limit and the seconds to wait when another score would pass
        PAIN_PER_HOUR in an hour or PAIN_PER_DAY in a day."""
        times = self._pain_s
        while times and now - times[0] >= _DAY_S:
            times.pop(0)
        if len(times) >= PAIN_PER_DAY:
            wait = times[len(times) - PAIN_PER_DAY] + _DAY_S - now
            raise msg.RequestError(
                msg.E_TRY_LATER,
                "pain score not recorded: at most %d per day; try again in %d s" % (PAIN_PER_DAY, wait),
            )
        if len(times) >= PAIN_PER_HOUR:
            oldest = times[len(times) - PAIN_PER_HOUR]  # the first of the last PAIN_PER_HOUR
            if now - oldest < _HOUR_S:
                raise msg.RequestError(
                    msg.E_TRY_LATER,
                    "pain score not recorded: at most %d per hour; try again in %d s"
                    % (PAIN_PER_HOUR, oldest + _HOUR_S - now),
                )

    def _op_pin(self, message):
        """Set or change the clinician PIN ("new"), remove it ("remove": true), or ask its status."""
        if "new" in message and "remove" in message:
            raise msg.RequestError(msg.E_BAD_FIELD, "pin takes new (set or change) or remove, not both")
        if "new" in message:
            self.lock.set_pin(message["new"], message.get("pin"))
        elif "remove" in message:
            if message["remove"] is not True:
                raise msg.RequestError(msg.E_BAD_FIELD, "remove must be true")
            self.lock.remove_pin(message.get("pin"))
        return self.lock.status()

    def load_program(self, name):
        """A stored program, or (open device only) a built-in preset, checked again here:
        the heat cap or the channel count may have changed since it was stored."""
        if not isinstance(name, str):
            raise msg.RequestError(msg.E_BAD_FIELD, "program must be a program name, got %s" % msg._show(name))
        if name in self.store.names():
            source = self.store.get(name)
        else:
            source = presets.find(name)
            if source is None:
                raise msg.RequestError(
                    msg.E_NOT_FOUND, "no program named %s (the programs request lists them)" % msg._show(name)
                )
            if self.lock.has_pin:
                raise msg.RequestError(
                    msg.E_LOCKED,
                    "patient mode runs prescribed programs only; %s is a built-in preset (a clinician uploads a copy)"
                    % name,
                )
        program = self._parse(source)
        self.device.check_program_waveforms(program)
        if program.has_heat and self.device.heat is None:
            raise msg.RequestError(msg.E_BAD_STATE, "program %s needs a heat pad; this device has none" % name)
        return program
