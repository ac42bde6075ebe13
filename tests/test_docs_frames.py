"""Every framed example in docs/protocol.md decodes: right CRC, strict JSON, within the line limit."""

import re

from firmware.protocols import frame
from tests.test_micropython_vm import ROOT

FRAME = re.compile(r"@\{.*\}\*[0-9A-F]{4}")


def test_every_example_frame_in_the_protocol_doc_is_valid():
    found = []
    for number, line in enumerate((ROOT / "docs" / "protocol.md").read_text().splitlines(), 1):
        for match in FRAME.finditer(line):
            found.append(match.group(0))
            message = frame.decode_line(match.group(0).encode())
            assert isinstance(message, dict), (number, match.group(0))
    assert len(found) >= 20, len(found)
