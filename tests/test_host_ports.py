"""Board discovery by USB VID:PID (2E8A:0005), from what the OS lists."""

from types import SimpleNamespace

from host import ports


def port(device, vid=None, pid=None, serial_number=None, description="n/a"):
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=serial_number, description=description)


LISTED = [
    port("/dev/ttyS0"),
    port("/dev/ttyACM1", 0x2E8A, 0x0005, "E6614C30", "Board in FS mode"),
    port("/dev/ttyACM0", 0x2E8A, 0x000A, "PICOSDK", "Pico"),  # same vendor, other product
    port("/dev/ttyUSB0", 0x0403, 0x6001, "A50285BI", "FT232R USB UART"),
]


def test_find_boards_matches_vid_and_pid_only():
    boards = ports.find_boards(lambda: LISTED)
    assert [b.device for b in boards] == ["/dev/ttyACM1"]
    assert boards[0].vid_pid == "2E8A:0005" and boards[0].serial_number == "E6614C30"


def test_all_ports_sorted_with_board_flag():
    listed = ports.all_ports(lambda: LISTED)
    assert [p.device for p in listed] == ["/dev/ttyACM0", "/dev/ttyACM1", "/dev/ttyS0", "/dev/ttyUSB0"]
    assert [p.is_board for p in listed] == [False, True, False, False]
    assert listed[2].vid_pid == "" and listed[2].as_dict()["vid_pid"] == ""


def test_uses_pyserial_by_default(monkeypatch):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: LISTED[:2])
    assert [b.device for b in ports.find_boards()] == ["/dev/ttyACM1"]
