"""Which integers and floats the firmware makes in a quiet tick, checked on a desktop.

On the RP2040 an int with |x| >= 2^30 is a heap object, and so is every float: a tick that
makes one allocates, and a tick must not (the collector would then run at random ticks).
The VM here is a 64-bit build whose small ints reach 2^62, so its heap count cannot see
the first kind. This probe can: it loads firmware/ with every arithmetic result wrapped
in a check (an import hook rewrites the syntax tree: each binary and unary operation, and
the target after each augmented assignment), runs scenarios from sim/scenarios/ with the
clock 5 s before the tick wrap, and reports every large int or float made inside a tick
that neither read nor wrote a byte on the serial line (a request, a reply or an event
allocates anyway, so those ticks are not held to it).

    python -m tests.smallint_probe SCENARIO.json ...      one JSON line: {"sites": [...], ...}

Run it in its own process: the rewritten firmware must not mix with the plain one.
"""

import ast
import builtins
import importlib.machinery
import json
import sys

SMALL_INT_LIMIT = 1 << 30  # the board's small ints: -2^30 <= x < 2^30
CHECK_NAME = "__pw_value_check__"
PACKAGE = "firmware"


class _Probe:
    """What the wrapped operations report while a tick runs."""

    def __init__(self):
        self.in_tick = False
        self.tick_sites = []  # (module, line, kind, value) made in the running tick
        self.quiet_sites = {}  # (module, line, kind) -> [count, first value, scenario]
        self.scenario = None
        self.quiet_ticks = 0
        self.loud_ticks = 0
        self.checked = 0  # operations checked inside ticks: shows the rewrite took effect

    def check(self, value, module, line):
        if self.in_tick:
            self.checked += 1
            kind = None
            if type(value) is int:
                if value >= SMALL_INT_LIMIT or value < -SMALL_INT_LIMIT:
                    kind = "int"
            elif type(value) is float:
                kind = "float"
            if kind is not None:
                self.tick_sites.append((module, line, kind, value))
        return value

    def end_tick(self, quiet):
        if quiet:
            self.quiet_ticks += 1
            for module, line, kind, value in self.tick_sites:
                key = (module, line, kind)
                seen = self.quiet_sites.get(key)
                if seen is None:
                    self.quiet_sites[key] = [1, value, self.scenario]
                else:
                    seen[0] += 1
        else:
            self.loud_ticks += 1
        self.tick_sites = []


PROBE = _Probe()


def _check_call(value_node, module, line):
    return ast.Call(
        func=ast.Name(id=CHECK_NAME, ctx=ast.Load()),
        args=[value_node, ast.Constant(module), ast.Constant(line)],
        keywords=[],
    )


def _load_form(target):
    """The augmented target read back (x, obj.attr, seq[i])."""
    copy = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(copy, target)


class _Instrument(ast.NodeTransformer):
    def __init__(self, module):
        self.module = module

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return ast.copy_location(_check_call(node, self.module, node.lineno), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return node
        return ast.copy_location(_check_call(node, self.module, node.lineno), node)

    def visit_AugAssign(self, node):
        # in place stays in place (a bytearray += must not become a new object): check after it
        self.generic_visit(node)
        after = ast.Expr(value=_check_call(_load_form(node.target), self.module, node.lineno))
        return [node, ast.copy_location(after, node)]


class _Loader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time (a cached .pyc would be the plain firmware)."""

    def get_code(self, fullname):
        source = self.get_data(self.path)
        tree = _Instrument(fullname).visit(ast.parse(source, self.path))
        ast.fix_missing_locations(tree)
        return compile(tree, self.path, "exec", dont_inherit=True)


class _Finder:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not (spec.origin or "").endswith(".py"):
            return spec
        spec.loader = _Loader(fullname, spec.origin)
        return spec


def install():
    """Rewrite firmware/ as it is imported; call before anything imports it."""
    if any(name == PACKAGE or name.startswith(PACKAGE + ".") for name in sys.modules):
        raise RuntimeError("the firmware is already imported: run the probe in a fresh process")
    setattr(builtins, CHECK_NAME, PROBE.check)
    sys.meta_path.insert(0, _Finder)


def _watch_ticks():
    """Device.tick as the probe sees it: quiet when no byte came in before it or went out in it."""
    from firmware.device import Device

    plain_tick = Device.tick

    def tick(device):
        serial = device.link.serial
        quiet = not serial._rx
        sent_before = len(serial._tx)
        PROBE.in_tick = True
        try:
            return plain_tick(device)
        finally:
            PROBE.in_tick = False
            PROBE.end_tick(quiet and len(serial._tx) == sent_before)

    Device.tick = tick


def run_scenarios(paths):
    """Each scenario near the tick wrap; returns the report (and each scenario's own check)."""
    from sim import expect, runner
    from sim.scenario import ScenarioRun

    _watch_ticks()
    failed = []
    for path in paths:
        normalized = runner.variant(runner.load(path), near_wrap=True)
        lines = []
        PROBE.scenario = path.rsplit("/", 1)[-1]
        ScenarioRun(runner._run_form(normalized), lines.append).run()
        for result in expect.check(normalized, lines):
            if not result.ok:
                failed.append("%s: %s" % (PROBE.scenario, result.line()))
    sites = [
        {"module": module, "line": line, "kind": kind, "count": seen[0], "value": repr(seen[1]), "scenario": seen[2]}
        for (module, line, kind), seen in sorted(PROBE.quiet_sites.items())
    ]
    return {
        "sites": sites,
        "quiet_ticks": PROBE.quiet_ticks,
        "loud_ticks": PROBE.loud_ticks,
        "checked": PROBE.checked,
        "failed_expectations": failed,
    }


def main(argv):
    install()
    sys.stdout.write(json.dumps(run_scenarios(argv[1:])) + "\n")


if __name__ == "__main__":
    main(sys.argv)
