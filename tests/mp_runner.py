"""Run the portable firmware tests (tests/fw) inside whatever runtime executes this file.

    MICROPYPATH=<repo> micropython tests/mp_runner.py [tests.fw.test_clock ...]

With no arguments it runs every tests/fw/test_*.py module. Output, one line each:

    PASS <module>.<test>
    FAIL <module>.<test>: <ExceptionType>: <message>
      | <traceback lines>
    ERROR <module>: import failed: <ExceptionType>: <message>
    SUMMARY passed=<n> failed=<n> errors=<n>

Exit status 0 only when nothing failed and at least one test ran. Written in the
subset MicroPython and CPython share (tests/test_micropython_vm.py parses it).
"""

import gc
import sys

try:
    import os
except ImportError:  # a MicroPython build without os
    os = None


def _here():
    path = sys.argv[0] if sys.argv and sys.argv[0] else "tests/mp_runner.py"
    cut = path.rfind("/")
    return path[:cut] if cut >= 0 else "."


def _repo_root():
    tests_dir = _here()
    if tests_dir in (".", ""):
        return ".."
    cut = tests_dir.rfind("/")
    return tests_dir[:cut] if cut > 0 else ("." if cut < 0 else "/")


def _discover():
    names = []
    if os is None:
        return names
    for entry in os.listdir(_here() + "/fw"):
        if entry.startswith("test_") and entry.endswith(".py"):
            names.append("tests.fw." + entry[:-3])
    names.sort()
    return names


def _format_exception(exc):
    lines = []
    try:
        import io

        buf = io.StringIO()
        if hasattr(sys, "print_exception"):
            sys.print_exception(exc, buf)
        else:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=buf)
        lines = buf.getvalue().split("\n")
    except Exception:  # noqa: BLE001 - best effort
        pass
    return ["  | " + line for line in lines if line]


def _one_line(text):
    return text.replace("\r", " ").replace("\n", " | ")


def _import(name):
    __import__(name)
    return sys.modules[name]


def run(names, out):
    passed = 0
    failed = 0
    errors = 0
    for name in names:
        try:
            module = _import(name)
        except Exception as exc:  # noqa: BLE001 - reported
            errors += 1
            out("ERROR %s: import failed: %s: %s" % (name, type(exc).__name__, _one_line(str(exc))))
            for line in _format_exception(exc):
                out(line)
            continue
        tests = sorted([attr for attr in dir(module) if attr.startswith("test_")])
        for attr in tests:
            fn = getattr(module, attr)
            if not callable(fn):
                continue
            gc.collect()  # the VM's heap is small: start every test from a compacted one
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - reported
                failed += 1
                out("FAIL %s.%s: %s: %s" % (name, attr, type(exc).__name__, _one_line(str(exc))))
                for line in _format_exception(exc):
                    out(line)
            else:
                passed += 1
                out("PASS %s.%s" % (name, attr))
    out("SUMMARY passed=%d failed=%d errors=%d" % (passed, failed, errors))
    return passed, failed, errors


def main(argv):
    root = _repo_root()
    if root not in sys.path:
        sys.path.insert(0, root)  # so `tests.fw...`, `firmware` and `sim` import without MICROPYPATH
    names = argv[1:] or _discover()

    def out(line):
        print(line)

    passed, failed, errors = run(names, out)
    return 0 if passed > 0 and failed == 0 and errors == 0 else 1


sys.exit(main(sys.argv))
