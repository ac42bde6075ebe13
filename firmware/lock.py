"""The clinician lock: a PIN between the patient and the device's clinical settings.

Threat model. Anyone holding the USB cable can send requests. With a PIN set the device is
in patient mode: settings changes, program uploads and deletes, log erase, raw (non-program)
sessions and maintenance mode need the clinician PIN, so a patient cannot raise their own
limits or load a program the clinician did not choose. With no PIN set the device is open
(clinic and bench use). The lock is NOT protection against someone at the REPL (maintenance
mode, `mpremote`) or with a flash reader: they can read or rewrite lock.log. It keeps honest
people honest and makes guessing slow; it is not a vault.

Storage. lock.log is an append-only log of framed records (`@{json}*CRC`, as settings.log),
the newest of each kind wins, a damaged record is skipped on boot:
    {"salt": <32 hex>, "hash": <64 hex>, "iter": N}   the PIN (salted, iterated sha256)
    {"salt": null, "hash": null}                       the PIN removed: open device
    {"failures": n}                                    wrong PINs since the last right one
The PIN itself is never stored, logged, echoed in an error text or kept after the check.
A lock.log that cannot be read at boot fails closed: the device boots in patient mode and
refuses every request the PIN guards (and every PIN change) with `storage`, never open. So does
a PIN record that decodes but cannot be used (a count above ITER_MAX, a salt or hash of the
wrong size) when no good PIN record follows it and no older PIN stands: a PIN was set, which
one is unknown, and skipping it would open the device. With an older PIN before it, that PIN
stays (locked, as before the change). Either way the device stays so until lock.log is mended
at the REPL (STOP held at power-up: maintenance mode). A line whose checksum fails cannot be
told apart from a torn write and is skipped, whatever it held.

Guessing. The rate limit is the defence (a 4-digit PIN is only 10^4 guesses): FREE_TRIES
wrong PINs cost nothing, each further one sets a wait that doubles from 1 s up to WAIT_MAX_S.
The failure count is on flash, so a reboot does not reset it; the device has no wall clock,
so after a reboot the wait for the current count starts again from boot.
"""

import binascii
import hashlib

from firmware.clock import ticks_diff
from firmware.compat import const
from firmware import record_file
from firmware.protocols import frame
from firmware.protocols import messages as msg

STORE_NAME = "lock.log"

PIN_MIN_DIGITS = const(4)
PIN_MAX_DIGITS = const(8)
SALT_BYTES = const(16)
# One check costs HASH_ITERATIONS + 1 sha256 blocks (salt + PIN fits one block, and so does
# digest + salt). The RP2040 at 125 MHz does roughly 10k-20k blocks/s through MicroPython's
# hashlib (the per-call overhead dominates), so 500 keeps a check at about 25-50 ms: invisible
# to a clinician, no threat to the tick or the watchdog. It only slows an offline attack on a
# dumped lock.log a little (10^4..10^8 PINs stay cheap on a PC); online guessing is stopped by
# the rate limit below, not by the iteration count. Each record stores its own count, so a
# later firmware may change this without locking anyone out, up to ITER_MAX (a record above
# it, from a later firmware after a downgrade say, is damage and fails closed).
HASH_ITERATIONS = const(500)
# A stored count above ITER_MAX is damage. A check runs inside one tick, so the bound is what
# one tick can afford: 4 x HASH_ITERATIONS is 2000 blocks, 100-200 ms at the estimate above,
# well under the 1 s watchdog (the heater's 50 ms lease may lapse meanwhile, which only turns
# the heater off). The old bound, 100000, was 5-10 s: a stored record could have reset the
# board with the watchdog on every PIN check. A later firmware that needs more rounds must
# raise this bound with them.
ITER_MAX = const(2000)

FREE_TRIES = const(3)  # wrong PINs with no wait (a typo or two)
WAIT_MAX_S = const(900)  # the longest wait (15 min): one guess per 15 min once there
# The failure count stops here: the wait is long capped by then, and lock.log grows by at most
# this many small records between two right PINs (each change of the count is one record).
FAILURES_MAX = const(99)


def wait_ms_for(failures):
    """The wait a count of wrong PINs sets: none for the first FREE_TRIES, then 1 s, 2 s, 4 s, ...
    doubling up to WAIT_MAX_S."""
    if failures <= FREE_TRIES:
        return 0
    shift = failures - FREE_TRIES - 1
    if shift >= 20:  # 2^20 s is far past the cap; keeps the integer small on the board
        return WAIT_MAX_S * 1000
    return min(1 << shift, WAIT_MAX_S) * 1000


def _check_pin_format(pin):
    """RequestError(E_BAD_FIELD) unless pin is 4 to 8 ASCII digits. The text names the rule,
    never the value: a near-miss PIN in a reply or a log would give most of it away."""
    ok = isinstance(pin, str) and PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS
    if ok:
        for ch in pin:
            if ch < "0" or ch > "9":
                ok = False
                break
    if not ok:
        raise msg.RequestError(msg.E_BAD_FIELD, "pin must be a string of 4 to 8 digits (0-9)")


def _derive(salt, pin, iterations):
    """h0 = sha256(salt + pin), h(i+1) = sha256(h(i) + salt): the key as 32 bytes."""
    digest = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(iterations):
        digest = hashlib.sha256(digest + salt).digest()
    return digest


def _same(a, b):
    """Equal bytes, in a time that does not depend on where they first differ."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def _hex(data):
    return binascii.hexlify(data).decode()


def _unhex(text, size):
    """bytes of a hex string of exactly `size` bytes, else ValueError (a damaged record)."""
    if not isinstance(text, str) or len(text) != 2 * size:
        raise ValueError("bad hex field")
    return binascii.unhexlify(text)


class ClinicianLock:
    def __init__(self, storage, clock, random_bytes):
        self.storage = storage
        self.clock = clock
        self.random_bytes = random_bytes
        self._salt = None  # bytes, or None: no PIN (open device)
        self._hash = None  # bytes of the key
        self._iter = HASH_ITERATIONS
        self.failures = 0
        self._wait_from = 0  # tick the current wait started at
        self._wait_ms = 0  # its length; 0: no wait
        self.skipped_records = 0  # damaged records found on load
        self.store_errors = 0  # failure-count writes that failed (the count still holds in memory)
        self.broken = None  # text of a storage failure (or a damaged PIN record) at boot: the lock then fails closed
        self._pin_damaged = False  # while loading: the newest PIN record seen so far is damaged
        self._file = record_file.Appender(storage, STORE_NAME)
        if storage is not None:
            try:
                self._load()
            except Exception as exc:  # noqa: BLE001 - boot on, locked: never open because the flash failed
                self._salt = None
                self._hash = None
                self.failures = 0
                self.broken = msg.clip("%s" % (exc,), 60)
        if self.failures > FREE_TRIES:  # after a reboot the wait runs again from boot
            self._start_wait()

    # ---- queries -------------------------------------------------------------------------

    @property
    def has_pin(self):
        """Patient mode: a PIN is set, or lock.log could not be read at boot (fail closed)."""
        return self._hash is not None or self.broken is not None

    def wait_ms(self):
        """Milliseconds left of the current wait, 0 if none. An expired wait is forgotten here,
        so a wait that is looked at does not come back when the 2^30 ms tick ring wraps."""
        if self._wait_ms <= 0:
            return 0
        passed = ticks_diff(self.clock.ticks_ms(), self._wait_from)
        # Time only moves forward: a negative difference means more than 2^29 ms went by.
        if passed < 0 or passed >= self._wait_ms:
            self._wait_ms = 0
            return 0
        return self._wait_ms - passed

    def status(self):
        """What a host may see: never any PIN data."""
        return {"pin_set": self.has_pin, "failures": self.failures, "wait_s": (self.wait_ms() + 999) // 1000}

    # ---- the check -----------------------------------------------------------------------

    def check(self, pin):
        """None if the device is open or pin is right; else RequestError.

        E_STORAGE: lock.log could not be read at boot, so whether a PIN is set is unknown: every
        guarded request is refused (fail closed) until a reboot reads it. E_LOCKED: a PIN is set
        and none was given. E_TRY_LATER: a wait is running (the PIN is
        not even looked at, so a right one is refused too). E_BAD_FIELD: not 4 to 8 digits (not
        counted as a try: the format is public). E_BAD_PIN: wrong (counted).
        """
        if self.broken is not None:
            raise msg.RequestError(
                msg.E_STORAGE, "clinician lock unreadable (%s): the device stays locked" % self.broken
            )
        if not self.has_pin:
            return None
        left = self.wait_ms()
        if left > 0:
            raise msg.RequestError(
                msg.E_TRY_LATER, "too many wrong PINs: try again in %d s" % ((left + 999) // 1000)
            )
        if pin is None:
            raise msg.RequestError(msg.E_LOCKED, "clinician PIN required: the device is locked (patient mode)")
        _check_pin_format(pin)
        if _same(_derive(self._salt, pin, self._iter), self._hash):
            if self.failures:
                # Best effort: if the write fails the old count is back after a reboot, which
                # errs towards waiting; refusing the clinician here would gain nothing.
                self._put_failures(0)
            return None
        self._wrong()

    def _wrong(self):
        # The count rises in memory even if the flash write fails: a full or failing store
        # must not switch the rate limit off (fail closed).
        if self.failures < FAILURES_MAX:
            self._put_failures(self.failures + 1)
        if self.failures > FREE_TRIES:
            self._start_wait()
            raise msg.RequestError(
                msg.E_BAD_PIN, "wrong PIN; wait %d s before the next try" % (self._wait_ms // 1000)
            )
        left = FREE_TRIES - self.failures
        if left == 0:
            raise msg.RequestError(msg.E_BAD_PIN, "wrong PIN; 0 tries before a wait: the next wrong PIN sets one")
        raise msg.RequestError(msg.E_BAD_PIN, "wrong PIN; %d %s before a wait" % (left, "try" if left == 1 else "tries"))

    def _start_wait(self):
        self._wait_from = self.clock.ticks_ms()
        self._wait_ms = wait_ms_for(self.failures)

    def _put_failures(self, count):
        try:
            self._append({"failures": count})
        except msg.RequestError:
            self.store_errors += 1
        self.failures = count

    # ---- changes -------------------------------------------------------------------------

    def set_pin(self, new_pin, current_pin=None):
        """Set or change the PIN. When one is set, current_pin must pass `check` first (the
        same rate limit: changing the PIN is no way around it)."""
        _check_pin_format(new_pin)
        self.check(current_pin)
        salt = bytes(self.random_bytes(SALT_BYTES))
        if len(salt) != SALT_BYTES:
            raise ValueError("random_bytes gave %d bytes, not %d" % (len(salt), SALT_BYTES))
        key = _derive(salt, new_pin, HASH_ITERATIONS)
        self._append({"salt": _hex(salt), "hash": _hex(key), "iter": HASH_ITERATIONS})
        self._salt = salt
        self._hash = key
        self._iter = HASH_ITERATIONS

    def remove_pin(self, current_pin):
        """Back to an open device; current_pin must pass `check`. Nothing to do when open."""
        if not self.has_pin:
            return
        self.check(current_pin)
        self._append({"salt": None, "hash": None})
        self._salt = None
        self._hash = None
        self._iter = HASH_ITERATIONS

    def _append(self, record):
        """Write one record or raise RequestError(E_STORAGE); callers change memory only after."""
        data = frame.encode_frame(record)
        try:
            self._file.append(data)  # a record that landed whole counts
        except Exception as err:  # noqa: BLE001 - any driver error becomes E_STORAGE
            raise msg.RequestError(msg.E_STORAGE, "lock store write failed: " + msg.clip("%s" % (err,), 40))

    # ---- load ----------------------------------------------------------------------------

    def _load(self):
        for record in record_file.records(self.storage, STORE_NAME):
            self._replay(record)
        self._file.suspect = record_file.torn(self.storage, STORE_NAME)
        if self._pin_damaged and self._hash is None:
            # the newest PIN record is damaged and nothing older locks the device: fail closed
            self.broken = "damaged PIN record"

    def _replay(self, record):
        try:
            if record is None:
                raise ValueError("not a record")
            if "failures" in record:
                count = record["failures"]
                if not msg.is_int(count) or count < 0:
                    raise ValueError("bad failures")
                self.failures = min(count, FAILURES_MAX)
            elif "salt" in record:
                self._pin_damaged = True  # until the record proves good
                if record["salt"] is None and record.get("hash") is None:
                    salt = key = None
                    iterations = HASH_ITERATIONS
                else:
                    salt = _unhex(record["salt"], SALT_BYTES)
                    key = _unhex(record.get("hash"), 32)
                    iterations = record.get("iter")
                    if not msg.is_int(iterations) or iterations < 1 or iterations > ITER_MAX:
                        raise ValueError("bad iter")
                self._salt = salt
                self._hash = key
                self._iter = iterations
                self._pin_damaged = False
            else:
                raise ValueError("unknown record")
        except (ValueError, AttributeError, TypeError, KeyError):
            self.skipped_records += 1
