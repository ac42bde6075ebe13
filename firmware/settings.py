"""Device settings a therapist may change: defaults for new sessions, and a heat cap below 43 C.

Every value is checked against the hard limit it may not pass (firmware/limits.py,
firmware/heat/config.py); a change of several names is all or nothing. Settings live
on the flash as an append-only log of framed records (`@{json}*CRC`, the wire format):

    {"set": {name: value, ...}}     one change request, every name of it in one record
    {"name": name, "value": value}  one name (written by earlier firmware; still read)

replayed in order, so the newest record of a name wins. One request is one record, so a
power cut during a write loses that whole change and nothing else, and a damaged record is
skipped on boot, never half-applied. A failing flash write is refused (`storage`) with
nothing changed: RAM changes only after the record is on the flash, and a fragment that a
failed write may have left is ended with a byte that makes it invalid before the next
record, so it can never turn into a record later. A flash that cannot be read at boot
leaves the defaults in force and every change refused with `storage`.
"""

from firmware import limits as L
from firmware.heat.config import HARD_MAX_TARGET_MC
from firmware import record_file
from firmware.protocols import frame
from firmware.protocols import messages as msg

STORE_NAME = "settings.log"

# name -> (lowest, highest, default); integers with their unit in the name
INT_SETTINGS = {
    "session_default_ms": (1000, L.SESSION_MAX_MS, L.SESSION_DEFAULT_MS),
    "ramp_default_ms": (L.RAMP_MIN_MS, L.RAMP_MAX_MS, L.RAMP_DEFAULT_MS),
    "lease_default_ms": (L.LEASE_MIN_MS, L.LEASE_MAX_MS, L.LEASE_DEFAULT_MS),  # or 0: no lease
    "heat_max_target_mc": (30000, HARD_MAX_TARGET_MC, HARD_MAX_TARGET_MC),
    "heat_minutes_default": (1, 120, 30),
}
INTERLOCK_CHOICES = ("concurrent", "alternate")
INTERLOCK_DEFAULT = "concurrent"


def _check(name, value):
    """The value as stored, or RequestError naming the setting, the value and the limit."""
    if name == "interlock_default":
        if value not in INTERLOCK_CHOICES:
            raise msg.RequestError(
                msg.E_BAD_FIELD,
                "interlock_default %s is not one of %s" % (msg._show(value), ", ".join(INTERLOCK_CHOICES)),
            )
        return value
    if name not in INT_SETTINGS:
        raise msg.RequestError(
            msg.E_BAD_FIELD, "unknown setting %s; known: %s" % (msg._show(name), ", ".join(names()))
        )
    low, high, _ = INT_SETTINGS[name]
    if name == "lease_default_ms":
        return msg.int_field_or_zero({name: value}, name, low, high, "no lease")
    return msg.int_field({name: value}, name, low, high)


def names():
    return sorted(list(INT_SETTINGS) + ["interlock_default"])


class Settings:
    def __init__(self, storage=None):
        self.storage = storage
        self.values = {"interlock_default": INTERLOCK_DEFAULT}
        for name in INT_SETTINGS:
            self.values[name] = INT_SETTINGS[name][2]
        self.skipped_records = 0  # damaged or out-of-limit records found on load
        self.broken = None  # text of a storage failure at boot: defaults in force, changes refused
        self._file = record_file.Appender(storage, STORE_NAME)
        if storage is not None:
            try:
                self._load()
            except Exception as exc:  # noqa: BLE001 - the device must boot, with the defaults
                self._defaults()
                self.skipped_records = 0
                self.broken = msg.clip("%s" % (exc,))

    def _defaults(self):
        self.values = {"interlock_default": INTERLOCK_DEFAULT}
        for name in INT_SETTINGS:
            self.values[name] = INT_SETTINGS[name][2]

    def get(self, name):
        return self.values[name]

    def to_dict(self):
        out = {}
        for name in self.values:
            out[name] = self.values[name]
        return out

    def limits(self):
        out = {"interlock_default": list(INTERLOCK_CHOICES)}
        for name in INT_SETTINGS:
            out[name] = [INT_SETTINGS[name][0], INT_SETTINGS[name][1]]
        return out

    def change(self, changes):
        """Apply a dict of changes after checking every one; persist; returns the names changed.

        All or nothing: every name in one record, RAM updated only once it is written. A
        storage failure raises RequestError(E_STORAGE) and changes nothing."""
        if not isinstance(changes, dict) or not changes:
            raise msg.RequestError(msg.E_BAD_FIELD, "set must be an object of setting: value, e.g. {\"ramp_default_ms\": 3000}")
        checked = {}
        for name in changes:
            checked[name] = _check(name, changes[name])
        if self.broken is not None:
            raise msg.RequestError(msg.E_STORAGE, "settings store unavailable: %s" % self.broken)
        if self.storage is not None:
            record = frame.encode_frame({"set": checked})
            try:
                self._file.append(record)
            except Exception as exc:  # noqa: BLE001 - any driver failure: nothing changed
                raise msg.RequestError(
                    msg.E_STORAGE, "settings not changed: storage write failed: %s" % msg.clip("%s" % (exc,), 60)
                )
        for name in checked:
            self.values[name] = checked[name]
        return sorted(checked)

    def _load(self):
        for record in record_file.records(self.storage, STORE_NAME):
            self._replay(record)
        self._file.suspect = record_file.torn(self.storage, STORE_NAME)

    def _replay(self, record):
        try:
            if record is None:
                raise ValueError("not a record")
            if "set" in record:
                group = record["set"]
                if not isinstance(group, dict) or not group:
                    raise ValueError("bad set record")
                checked = {}
                for name in group:
                    checked[name] = _check(name, group[name])  # one bad value skips the whole record
                for name in checked:
                    self.values[name] = checked[name]
                return
            name = record.get("name")
            self.values[name] = _check(name, record.get("value"))
        except (msg.RequestError, ValueError, AttributeError, TypeError):
            self.skipped_records += 1
