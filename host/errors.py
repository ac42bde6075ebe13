"""The errors a conversation with a device can end in, in one hierarchy.

    ClientError                 catch this for "the device conversation failed"
    ├── TransportError          the port failed: the line to the device broke (.url, .message)
    │   └── PortOpenError       the port URL cannot be opened (no such device, refused, busy...)
    ├── DeviceError             the device answered with an error reply (.op, .code, .message)
    ├── NoResponse              no reply in time, even after resending; the request MAY have run
    ├── VersionMismatch         the device speaks another major protocol version
    ├── ProtocolError           the device answered, but not the way the protocol says it must
    └── CallbackError           the on_event callback raised; the request itself completed

Not a ClientError, because nothing was sent: ArgumentError (a ValueError), raised before
sending when an argument is not what the protocol takes (amplitudes not integers in µA...).

`host.client` and `host.transport` re-export these under the same names, so
`from host.client import ClientError` and `from host.transport import TransportError`
keep working. docs/client.md says which to catch when.
"""


class ClientError(Exception):
    """Base of the errors a device conversation can end in (a dead link included)."""


class TransportError(ClientError):
    """The port failed: it cannot be opened, or the line to the device broke."""

    def __init__(self, url, message):
        ClientError.__init__(self, message)
        self.url = url
        self.message = message


class PortOpenError(TransportError):
    """The port URL cannot be opened (no such device, refused, busy...)."""


class DeviceError(ClientError):
    """The device answered with an error reply: `code` is stable, `message` is for people."""

    def __init__(self, op, code, message):
        ClientError.__init__(self, "device refused %s: %s (%s)" % (op, message, code))
        self.op = op
        self.code = code
        self.message = message


def _seconds(value):
    return ("%.3f" % value).rstrip("0").rstrip(".")


class NoResponse(ClientError):
    """No reply within the timeout, even after resending (always with the same id).

    The request may have run all the same: the request or only its reply may have been
    lost. Ask status() before repeating a start (a repeat with a new id would run again).
    Attributes: port, op, request_id, waited_s (seconds, all attempts), attempts, damaged
    (lines that arrived meanwhile but were dropped: bad checksum, too long: then something
    answers, and the hint is about the line, not whether a device is there).
    """

    def __init__(self, port, op, request_id, waited_s, attempts, damaged=0):
        text = "no reply from %s to %s (request id %d): waited %s s" % (port, op, request_id, _seconds(waited_s))
        if attempts > 1:
            text += " over %d attempts with the same id" % attempts
        text += "; the request may have run all the same (ask status() before repeating a start)"
        if damaged:
            text += (
                "; %d damaged line%s arrived meanwhile (bad checksum or too long), so something answers: "
                "check the cable, the baud rate and for noise on the line" % (damaged, "" if damaged == 1 else "s")
            )
        else:
            text += "; is a pulsewarm device on that port, and no other program using it?"
        ClientError.__init__(self, text)
        self.port = port
        self.op = op
        self.request_id = request_id
        self.waited_s = waited_s
        self.attempts = attempts
        self.damaged = damaged


class VersionMismatch(ClientError):
    """The device speaks another major protocol version than this host."""

    def __init__(self, text, host_version, device_version):
        ClientError.__init__(self, text)
        self.host_version = host_version
        self.device_version = device_version


class ProtocolError(ClientError):
    """The device answered, but not the way the protocol says it must."""


class CallbackError(ClientError):
    """The on_event callback raised while a request (or poll) read the line.

    The request was not disturbed: it ran to its end first. `op` is the request (or
    "poll"); `reply` is what the request returned (its reply fields) when it succeeded,
    or the error reply as received when the device refused it, else None; `error` is the
    ClientError the request itself ended in (None: it succeeded); `events` are the events
    a poll read (all were dispatched and kept). The callback's own exception is
    `__cause__` (the first one, when several calls raised; `callback_errors` has them all).
    """

    def __init__(self, op, callback_errors, reply=None, error=None, events=None):
        first = callback_errors[0]
        text = "the on_event callback raised %s: %s" % (type(first).__name__, first)
        if len(callback_errors) > 1:
            text += " (and %d more times)" % (len(callback_errors) - 1)
        if op == "poll":
            text += "; poll itself read %d events, all dispatched and kept" % len(events or [])
        elif error is None:
            text += "; the %s request itself succeeded (its reply is in .reply)" % op
        else:
            text += "; the %s request itself failed: %s" % (op, error)
        ClientError.__init__(self, text)
        self.op = op
        self.reply = reply
        self.error = error
        self.events = events
        self.callback_errors = list(callback_errors)


class ArgumentError(ValueError, TypeError):
    """An argument refused before anything is sent: not an integer in its unit (µA, ms,
    milli-°C), not a list where one is needed. A ValueError; also a TypeError, which is
    what start() raised for non-integer amplitudes before, so code catching that still works."""
