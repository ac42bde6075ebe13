"""Every test docs/safety.md names as the proof of a mitigation exists: a renamed or removed test
must take its row with it, never leave a hazard pointing at nothing."""

import re

from tests.test_micropython_vm import ROOT

FILE_REF = re.compile(r"^(tests/[\w/]+\.py)(?:::(\w+))?$")
NAME_REF = re.compile(r"^test_\w+$")


def _references(text):
    """(file, test name or None) for each reference in the hazard tables; a bare test name
    belongs to the last file named before it in the same row."""
    found = []
    for row in text.splitlines():
        if not row.startswith("|"):
            continue
        current = None
        for token in re.findall(r"`([^`]+)`", row):
            match = FILE_REF.match(token)
            if match:
                current = match.group(1)
                found.append((current, match.group(2)))
            elif NAME_REF.match(token) and current is not None:
                found.append((current, token))
    return found


def test_every_test_the_safety_doc_names_exists():
    references = _references((ROOT / "docs" / "safety.md").read_text())
    assert len(references) > 150, len(references)
    missing = []
    for path, name in references:
        source = ROOT / path
        if not source.exists():
            missing.append(path)
        elif name is not None and re.search(r"^def %s\(" % name, source.read_text(), re.M) is None:
            missing.append("%s::%s" % (path, name))
    assert missing == [], missing


def test_a_reference_to_a_missing_test_is_found():
    row = "| hazard | cause | mitigation | `tests/fw/test_safety.py::test_no_such_test`, `test_nor_this` |"
    assert _references(row) == [("tests/fw/test_safety.py", "test_no_such_test"), ("tests/fw/test_safety.py", "test_nor_this")]
