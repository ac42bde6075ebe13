"""One served simulated device, stepped one tick at a time (portable).

The runtime-specific part (pty, socket, stdin/stdout, pacing against the wall
clock) lives in the caller; this class only moves bytes and simulated time.
"""

from sim.board import SimBoard
from sim import faults

TICK_MS = 10


class ServedDevice:
    def __init__(self, seed=1, start_ms=0, channels=2, device_id="pulsewarm-sim-0"):
        self.board = SimBoard(seed=seed, start_ms=start_ms, channels=channels)
        self.device = self.board.build_device(device_id)

    def step(self, incoming):
        """Feed bytes from the host, run one tick, return the bytes for the host."""
        if incoming:
            self.board.serial.host_write(incoming)
        self.device.tick()
        self.board.advance(TICK_MS)
        return self.board.serial.host_read()

    def set_fault(self, name, active):
        faults.set_fault(self.board, name, active)
