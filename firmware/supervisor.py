"""Supervisor: the device's state and its latched faults.

IDLE -> RUNNING <-> PAUSED; any state -> FAULT. Outputs may be non-zero only
in RUNNING. A fault stays latched until a host asks to clear it and its cause
is gone; clearing goes to IDLE, never straight back to stimulation.
"""

from firmware.compat import const
from firmware.protocols import messages

IDLE = const(0)
RUNNING = const(1)
PAUSED = const(2)
FAULT = const(3)
STATE_NAMES = ("IDLE", "RUNNING", "PAUSED", "FAULT")

# Fault names (stable strings: the protocol, the trace and the docs use them).
# Channel faults carry the channel: "no_load:1".
F_NO_LOAD = "no_load"  # commanded current does not flow: electrode off
F_OVERCURRENT = "overcurrent"  # more current flows than was commanded
F_ENVELOPE = "envelope_breach"  # a pulse would have left the validated envelope
F_INTERNAL = "internal_error"  # an exception escaped the control tick

# Why the device paused (reported in status and state events).
PAUSE_REQUEST = "request"
PAUSE_LEASE = "lease_expired"


class Supervisor:
    def __init__(self):
        self.state = IDLE
        self.faults = []  # names, in the order they latched
        self.fault_msg = ""  # the first fault's message: value and limit
        self.latest_msg = ""  # the latest fault's message (a further one while latched too)
        self.reason = ""  # why the last change happened (pause reason, stop cause)
        self.changes = 0  # bumps on every state change, for events

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def running(self):
        return self.state == RUNNING

    def _refuse_in_fault(self, what):
        if self.state == FAULT:
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot %s: fault %s latched (%s); send clear_fault first" % (what, self.faults[0], self.fault_msg),
            )

    def start(self):
        self._refuse_in_fault("start")
        if self.state != IDLE:
            raise messages.RequestError(
                messages.E_BAD_STATE, "cannot start: already %s (stop first, or resume a pause)" % self.state_name
            )
        self._set(RUNNING, "start")

    def pause(self, reason):
        if self.state != RUNNING:
            raise messages.RequestError(messages.E_BAD_STATE, "cannot pause: state is %s" % self.state_name)
        self._set(PAUSED, reason)

    def resume(self):
        self._refuse_in_fault("resume")
        if self.state != PAUSED:
            raise messages.RequestError(messages.E_BAD_STATE, "cannot resume: state is %s, not PAUSED" % self.state_name)
        self._set(RUNNING, "resume")

    def to_idle(self, reason):
        """End a session (stop finished, emergency stop, session timer). No-op in FAULT and IDLE."""
        if self.state == RUNNING or self.state == PAUSED:
            self._set(IDLE, reason)

    def trip(self, name, message):
        """Latch a fault. Only the first message is kept: it names the cause. A new fault
        while already latched is a change too: the host hears of it (a state event with the
        longer list) before a clear_fault can take it away."""
        if self.state != FAULT:
            self.faults.append(name)
            self.fault_msg = message
            self.latest_msg = message
            self._set(FAULT, name)
        elif name not in self.faults:
            self.faults.append(name)
            self.latest_msg = message
            self.changes += 1

    def clear(self):
        if self.state != FAULT:
            raise messages.RequestError(messages.E_BAD_STATE, "no fault to clear (state %s)" % self.state_name)
        self.faults = []
        self.fault_msg = ""
        self.latest_msg = ""
        self._set(IDLE, "clear_fault")

    def _set(self, state, reason):
        self.state = state
        self.reason = reason
        self.changes += 1
