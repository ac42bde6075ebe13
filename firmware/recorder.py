"""What the session log says about therapy: starts, phases, amplitude and heat changes,
samples, faults, stops and pain scores (record kinds in docs/programs.md).

Recording never stands in the way of safety: a failed flash write is counted
(`errors`, shown in status) and the session goes on. Each record carries the device
uptime and, once a host has told the device the time (hello's `unix_s`), the wall
time, so a report can place sessions on a calendar.
"""

from firmware.protocols import messages as msg

SAMPLE_EVERY_MS = 60000  # one amplitude/temperature sample per minute of session: about 5-6 KB per 30 min
FAULT_MSG_MAX = 100
# One amp record per channel, and one heat record, per this many seconds at most: a flood of
# requests must not rotate earlier sessions out of the log. A change in between waits and is
# written when the time comes (or when the session ends): the last value of a burst is recorded.
CHANGE_RECORD_EVERY_S = 10


class Recorder:
    def __init__(self, log, uptime, channels=2):
        self.log = log  # a SessionLog (firmware/session_log.py)
        self.uptime = uptime  # firmware.clock.Elapsed: total_ms since boot
        self.unix_offset_s = None  # wall time minus uptime, once a host has told us
        self.open = False  # a session is running or paused
        self.sid = None  # seq of the open session's start record (None if that write failed)
        self.last_sid = None  # the most recent session, open or closed (a pain score "after" goes there)
        self.errors = 0
        self.last_error = ""
        # the coalesced changes: slot ch for channel ch's amp records, the last slot for heat
        self._heat_slot = channels
        self._at_s = [None] * (channels + 1)  # uptime s of the slot's last record this session
        self._waits = [False] * (channels + 1)  # a value is waiting to be written
        self._value = [None] * (channels + 1)  # that value
        self.waiting = 0  # slots with a value waiting: the tick checks this one int

    def set_time(self, unix_s):
        self.unix_offset_s = unix_s - self.uptime.total_ms // 1000

    def _write(self, record):
        record["up_ms"] = self.uptime.total_ms
        record["unix_s"] = None if self.unix_offset_s is None else self.unix_offset_s + self.uptime.total_ms // 1000
        try:
            return self.log.append(record)
        except Exception as exc:  # a full or failing flash must not stop therapy or its safety checks
            self.errors += 1
            self.last_error = msg.clip("%s %s" % (type(exc).__name__, exc), 80)
            return None

    def start(self, program, session_ms, amp_ua, heat, interlock):
        seq = self._write({"ev": "start", "program": program, "session_ms": session_ms, "amp_ua": amp_ua,
                           "heat": heat, "interlock": interlock})
        # the start record's seq names the session; a failed write still opens one (sid None is
        # how the records say "start record missing")
        self.open = True
        self.sid = seq
        self.last_sid = seq
        for slot in range(len(self._at_s)):
            self._at_s[slot] = None  # a new session's first change of each is written at once
        return seq

    def phase(self, index, name):
        self._write({"ev": "phase", "sid": self.sid, "index": index, "name": name})

    def amp(self, ch, target_ua):
        self._change(ch, target_ua)

    def heat(self, target_mc):
        """Heat on at target_mc, or off (None)."""
        self._change(self._heat_slot, target_mc)

    def _change(self, slot, value):
        now_s = self.uptime.seconds
        last_s = self._at_s[slot]
        if last_s is None or now_s - last_s >= CHANGE_RECORD_EVERY_S:
            if self._waits[slot]:
                self._waits[slot] = False
                self.waiting -= 1
            self._write_change(slot, value, now_s)
            return
        if not self._waits[slot]:
            self._waits[slot] = True
            self.waiting += 1
        self._value[slot] = value

    def write_waiting(self, at_end=False):
        """Write each waiting change once its time has come (every one at the session's end)."""
        now_s = self.uptime.seconds
        for slot in range(len(self._waits)):
            if self._waits[slot] and (at_end or now_s - self._at_s[slot] >= CHANGE_RECORD_EVERY_S):
                self._waits[slot] = False
                self.waiting -= 1
                self._write_change(slot, self._value[slot], now_s)

    def _write_change(self, slot, value, now_s):
        self._at_s[slot] = now_s
        if slot == self._heat_slot:
            self._write({"ev": "heat", "sid": self.sid, "target_mc": value})
        else:
            self._write({"ev": "amp", "sid": self.sid, "ch": slot, "target_ua": value})

    def sample(self, run_ms, amp_ua, temp_mc, target_mc):
        self._write({"ev": "sample", "sid": self.sid, "run_ms": run_ms, "amp_ua": amp_ua, "temp_mc": temp_mc,
                     "target_mc": target_mc})

    def fault(self, faults, text):
        self._write({"ev": "fault", "sid": self.sid, "faults": faults, "msg": msg.clip(text, FAULT_MSG_MAX)})

    def stop(self, reason, run_ms, max_amp_ua, cem43_ms):
        if self.waiting:
            self.write_waiting(at_end=True)
        self._write({"ev": "stop", "sid": self.sid, "reason": reason, "run_ms": run_ms, "max_amp_ua": max_amp_ua,
                     "cem43_ms": cem43_ms})
        self.open = False
        self.sid = None

    def pain(self, when, score):
        """A score "before" belongs to the running session or the next one (sid null); "after",
        to the running or the last session."""
        if when == "before":
            sid = self.sid if self.open else None
        else:
            sid = self.sid if self.open else self.last_sid
        return self._write({"ev": "pain", "sid": sid, "when": when, "score": score})
