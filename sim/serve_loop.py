"""One served simulated device, stepped one tick at a time (portable).

The runtime-specific part (pty, socket, stdin/stdout, pacing against the wall
clock, the control socket) lives in the caller; this class only moves bytes and
simulated time, and answers control requests (`control`).
"""

from sim.board import SimBoard
from sim import faults

TICK_MS = 10


class ServedDevice:
    def __init__(self, seed=1, start_ms=0, channels=2, device_id="pulsewarm-sim-0"):
        self.board = SimBoard(seed=seed, start_ms=start_ms, channels=channels)
        self.device = self.board.build_device(device_id)
        self.device_id = device_id
        self.seed = seed

    def step(self, incoming):
        """Feed bytes from the host, run one tick, return the bytes for the host."""
        if incoming:
            self.board.serial.host_write(incoming)
        self.device.tick()
        self.board.advance(TICK_MS)
        return self.board.serial.host_read()

    def set_fault(self, name, active):
        faults.set_fault(self.board, name, active)

    def control(self, request):
        """Answer one control request (a dict, see sim/control.py) with a reply dict.

        {"inject": NAME} / {"clear": NAME} / {"clear_all": true} change the simulated
        hardware; {"list": true} adds every fault with its description; {} (or
        {"status": true}) only reports. Every reply carries ok, device_id, seed, active
        (the injected faults now), ticks_ms and elapsed_ms (the virtual clock) and
        echoes "seq" when the request had one; a refused request has ok false and
        error (and known: the fault names, for an unknown name).
        """
        board = self.board
        channels = board.pulse_out.channels
        reply = {"ok": True}
        if not isinstance(request, dict):
            reply = {"ok": False, "error": "a control request is a JSON object"}
            request = {}
        if "seq" in request:
            reply["seq"] = request["seq"]
        keys = ("inject", "clear", "clear_all", "list", "status", "seq")
        unknown = sorted([key for key in request if key not in keys])
        changes = [key for key in ("inject", "clear", "clear_all") if key in request]
        if unknown:
            reply["ok"] = False
            reply["error"] = "unknown control key %s; use inject, clear, clear_all, list or status" % _quote(unknown[0])
        elif len(changes) > 1:
            reply["ok"] = False
            reply["error"] = "one of inject, clear, clear_all per request"
        elif "inject" in request or "clear" in request:
            active = "inject" in request
            name = request["inject"] if active else request["clear"]
            if not isinstance(name, str) or not faults.is_known(name, channels):
                reply["ok"] = False
                reply["error"] = "unknown fault %s; known: %s" % (_quote(name), ", ".join(faults.names(channels)))
                reply["known"] = faults.names(channels)
            else:
                faults.set_fault(board, name, active)
        elif request.get("clear_all"):
            for name in list(board.active_faults):
                faults.set_fault(board, name, False)
        if request.get("list"):
            reply["faults"] = [{"name": name, "description": text} for name, text in faults.catalog(channels)]
        reply["device_id"] = self.device_id
        reply["seed"] = self.seed
        reply["active"] = list(board.active_faults)
        reply["ticks_ms"] = board.clock.ticks_ms()
        reply["elapsed_ms"] = board.clock.elapsed_ms
        return reply


def _quote(value):
    """A received name in a reply, the same on both runtimes (MicroPython's repr escapes every
    non-ASCII character, CPython's keeps the printable ones); other values as repr."""
    if isinstance(value, str):
        return "'%s'" % value
    return repr(value)
