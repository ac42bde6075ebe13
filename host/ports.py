"""Find pulsewarm boards among the serial ports by their USB VID:PID.

The board enumerates as a MicroPython USB CDC device (Raspberry Pi VID 2E8A,
PID 0005). Matching on VID:PID rather than on a device name works the same on
Linux (/dev/ttyACM*), macOS (/dev/cu.usbmodem*) and Windows (COM*).
"""

from dataclasses import dataclass

from serial.tools import list_ports

BOARD_VID = 0x2E8A
BOARD_PID = 0x0005


@dataclass(frozen=True)
class PortInfo:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def vid_pid(self):
        """'2E8A:0005', or '' for a port that is not USB."""
        if self.vid is None or self.pid is None:
            return ""
        return "%04X:%04X" % (self.vid, self.pid)

    @property
    def is_board(self):
        return self.vid == BOARD_VID and self.pid == BOARD_PID

    def as_dict(self):
        return {
            "device": self.device,
            "vid_pid": self.vid_pid,
            "serial_number": self.serial_number,
            "description": self.description,
            "board": self.is_board,
        }


def all_ports(comports=None):
    """Every serial port the OS reports, sorted by device name."""
    found = []
    for port in (comports or list_ports.comports)():
        found.append(
            PortInfo(
                device=port.device,
                vid=port.vid,
                pid=port.pid,
                serial_number=port.serial_number,
                description=port.description or "",
            )
        )
    return sorted(found, key=lambda info: info.device)


def find_boards(comports=None):
    """The ports that look like a pulsewarm board (VID:PID 2E8A:0005)."""
    return [info for info in all_ports(comports) if info.is_board]
