"""host/build_firmware.py: the build owns DIST/firmware and nothing else.

Each build starts that folder afresh, so a module renamed or removed in firmware/ leaves no
stale .mpy behind (tensctl deploy copies what is in the build's list, but `make firmware`
users copy the folder). mpy-cross is replaced by a stand-in that writes each target: these
tests are about the folder, not the compiler.
"""

import os
import subprocess
from pathlib import Path

import pytest

from host import build_firmware

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_compiler(monkeypatch):
    def run(args, cwd=None, capture_output=False, text=False):
        target = args[args.index("-o") + 1]
        Path(target).write_bytes(b"M\x06fake")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(build_firmware, "mpy_cross", lambda: "mpy-cross")
    monkeypatch.setattr(build_firmware.subprocess, "run", run)


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_a_build_removes_stale_files_from_its_own_folder_only(tmp_path, fake_compiler):
    dist = tmp_path / "dist"
    stale = [dist / "firmware" / "renamed_away.mpy", dist / "firmware" / "drivers" / "rp2_old.mpy",
             dist / "firmware" / "gone" / "module.mpy", dist / "firmware" / "stray.py"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
    (dist / "firmware" / build_firmware.BUILD_MARKER).write_text("an earlier build's")
    mine = dist / "notes.txt"  # beside the build's folder: not the build's to remove
    mine.write_text("keep")
    built = build_firmware.build(str(ROOT), str(dist))
    assert all(not path.exists() for path in stale)
    assert not (dist / "firmware" / "gone").exists()
    assert mine.read_text() == "keep"
    expected = sorted(os.path.relpath(target, dist) for _, target in built)
    assert _tree(dist) == sorted(expected + ["notes.txt", "firmware/" + build_firmware.BUILD_MARKER])
    assert "firmware/main.py" in expected and "firmware/device.mpy" in expected


def test_a_build_into_the_project_itself_is_refused_and_touches_nothing(tmp_path, fake_compiler):
    project = tmp_path / "project"
    source = project / "firmware" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("X = 1\n")
    with pytest.raises(SystemExit) as err:
        build_firmware.build(str(project), str(project))
    assert "source" in str(err.value)
    assert source.read_text() == "X = 1\n"
    with pytest.raises(SystemExit):
        build_firmware.build(str(project), str(project / "firmware" / ".."))


def test_an_output_folder_that_is_a_file_is_an_error_not_a_removal(tmp_path, fake_compiler):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "firmware").write_text("not a folder")
    with pytest.raises(SystemExit):
        build_firmware.build(str(ROOT), str(dist))
    assert (dist / "firmware").read_text() == "not a folder"


def test_a_folder_of_another_checkouts_sources_is_refused_and_kept_whole(tmp_path, fake_compiler):
    dist = tmp_path / "elsewhere"
    theirs = {"firmware/device.py": "X = 1\n", "firmware/main.py": "import device\n", "firmware/README": "mine"}
    for name, text in theirs.items():
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_text(text)
    with pytest.raises(build_firmware.OutputError) as err:
        build_firmware.build(str(ROOT), str(dist))
    text = str(err.value)
    assert str(dist / "firmware") in text and "README" in text and "no build writes" in text
    assert build_firmware.BUILD_MARKER in text
    assert {name: (dist / name).read_text() for name in theirs} == theirs
    assert _tree(dist) == sorted(theirs)


def test_an_unmarked_folder_of_only_mpy_main_and_boot_is_an_older_build_and_is_replaced(tmp_path, fake_compiler):
    dist = tmp_path / "dist"
    for name in ("firmware/old_module.mpy", "firmware/drivers/x.mpy", "firmware/main.py", "firmware/boot.py"):
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(b"old")
    built = build_firmware.build(str(ROOT), str(dist))
    assert not (dist / "firmware" / "old_module.mpy").exists()
    assert (dist / "firmware" / build_firmware.BUILD_MARKER).is_file()
    assert built and all(Path(target).exists() for _, target in built)
    build_firmware.build(str(ROOT), str(dist))  # its own marked output: replaced again


def test_an_output_the_file_system_refuses_is_one_clear_error(tmp_path, fake_compiler):
    with pytest.raises(build_firmware.OutputError) as err:
        build_firmware.build(str(ROOT), "/proc/pulsewarm-no-such-dir")
    assert str(err.value).startswith("cannot build into /proc/pulsewarm-no-such-dir: ")
