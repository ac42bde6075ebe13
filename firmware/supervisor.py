"""Supervisor: the device's state and its latched faults.

Outputs may be non-zero only in RUNNING. A fault moves to FAULT from any state
and stays there until a host asks to clear it; clearing goes to IDLE, never
straight back to stimulation.
"""

from firmware.compat import const
from firmware.protocols import messages

IDLE = const(0)
RUNNING = const(1)
FAULT = const(2)
STATE_NAMES = ("IDLE", "RUNNING", "FAULT")

# Fault names (stable strings: the protocol, the trace and the docs use them).
F_NO_LOAD = "no_load"  # commanded current does not flow: electrode off
F_OVERCURRENT = "overcurrent"  # more current flows than was commanded
F_INTERNAL = "internal_error"  # an exception escaped the control tick


class Supervisor:
    def __init__(self):
        self.state = IDLE
        self.faults = []  # names, in the order they latched
        self.fault_msg = ""  # the first fault's message: value and limit
        self.changes = 0  # bumps on every state change, for events

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def running(self):
        return self.state == RUNNING

    def start(self):
        if self.state == FAULT:
            raise messages.RequestError(
                messages.E_BAD_STATE,
                "cannot start: fault %s latched (%s); send clear_fault first" % (self.faults[0], self.fault_msg),
            )
        if self.state != RUNNING:
            self._set(RUNNING)

    def stop(self):
        if self.state == RUNNING:
            self._set(IDLE)

    def trip(self, name, message):
        """Latch a fault. Only the first message is kept: it names the cause."""
        if name not in self.faults:
            self.faults.append(name)
        if self.state != FAULT:
            self.fault_msg = message
            self._set(FAULT)

    def clear(self):
        if self.state != FAULT:
            raise messages.RequestError(messages.E_BAD_STATE, "no fault to clear (state %s)" % self.state_name)
        self.faults = []
        self.fault_msg = ""
        self._set(IDLE)

    def _set(self, state):
        self.state = state
        self.changes += 1
