"""`sim.trace.trace_line` is hand-built for speed; it must give the same bytes as the generic encoder.

The reference (tests/trace_fakes.py `reference_line`) is the original trace line: the whole
dict through `jsonenc.encode`. Checked over generated states under CPython (hypothesis) and,
for a fixed set of edge cases plus seeded random ones, inside the MicroPython VM, where the
lines must also equal CPython's.
"""

import json
import random
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import trace_fakes
from tests.test_micropython_vm import ROOT, VM_TEST_HEAP, _micropython_or_fail, _vm_env

# Names that need escaping in JSON: quotes, backslash, control characters, DEL, non-ASCII
# (BMP and astral). Lone surrogates are left out: the encoder refuses them on both paths.
TRICKY = ['a"b', "back\\slash", "\x00\x01\x1f", "tab\there\n", "\x7f", "é", "µA", "温度", "\U0001f600", ""]
REAL = ["IDLE", "RUNNING", "PAUSED", "FAULT", "off", "heating", "holding", "fault", "overcurrent", "electrode_off"]

names = st.one_of(
    st.sampled_from(REAL),
    st.sampled_from(TRICKY),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12),
)
ints = st.one_of(
    st.sampled_from([0, 1, -1, 999, 1000, 1001, -999, -1000, -1001, 59999, 60000, 2**31, -(2**31), 2**63, -(2**63)]),
    st.integers(-100000, 100000),
    st.integers(),
)
json_values = st.recursive(
    st.none() | st.booleans() | ints | names,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(names, kids, max_size=3),
    max_leaves=12,
)
rx_lists = st.one_of(
    st.just([]),
    st.lists(st.dictionaries(names, json_values, max_size=5), max_size=3),
)
channel_rows = st.fixed_dictionaries(
    {
        "amp_ua": ints,
        "target_ua": ints,
        "phase_us": ints,
        "rate_hz": ints,
        "delivered_ua": ints,
        "pulses": ints,
        "max_charge_pc": ints,
        "net_pc": ints,  # negative: rounds toward zero
    }
)
heats = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "state": names,
            "target_mc": ints,
            "duty_permille": ints,
            "cem43_ms": ints,
            "pad_true_mc": ints,
            "valid": st.booleans(),  # False: measured_mc is null
            "value_mc": ints,
        }
    ),
)
cases = st.fixed_dictionaries(
    {
        "t_ms": st.one_of(st.integers(0, 7 * 24 * 3600 * 1000), st.integers(min_value=0)),
        "state": names,
        "faults": st.one_of(st.just([]), st.lists(names, max_size=4)),
        "sim_faults": st.one_of(st.just([]), st.lists(names, max_size=4)),
        "rx": rx_lists,
        "channels": st.integers(1, 2).flatmap(lambda n: st.lists(channel_rows, min_size=n, max_size=n)),
        "heat": heats,
    }
)


@settings(max_examples=600, deadline=None)
@given(cases)
def test_trace_line_matches_the_generic_encoder(case):
    fast, reference, reset = trace_fakes.compare(case)
    assert fast == reference
    assert reset, "trace_line must reset every channel's row counters"
    json.loads(fast)  # and it is JSON


def test_a_typical_line():
    case = {
        "t_ms": 12300,
        "state": "RUNNING",
        "faults": [],
        "sim_faults": [],
        "rx": [],
        "channels": [
            {"amp_ua": 20000, "target_ua": 20000, "phase_us": 200, "rate_hz": 100, "delivered_ua": 19990,
             "pulses": 10, "max_charge_pc": 4000000, "net_pc": -1500},
        ],
        "heat": {"state": "holding", "target_mc": 40000, "duty_permille": 357, "cem43_ms": 125000,
                 "pad_true_mc": 40100, "valid": False, "value_mc": 39950},
    }
    fast, reference, _ = trace_fakes.compare(case)
    assert fast == reference == (
        '{"t_s":12.3,"ch":[{"amp_ua":20000,"delivered_ua":19990,"max_phase_charge_nc":4000,"net_charge_nc":-1,'
        '"phase_us":200,"pulses":10,"rate_hz":100,"target_ua":20000}],"faults":[],"heat":{"cem43_min":2,'
        '"heater_duty_pct":35,"measured_mc":null,"pad_true_mc":40100,"state":"holding","target_mc":40000},'
        '"rx":[],"sim_faults":[],"state":"RUNNING"}'
    )


# ---- the same inside the MicroPython VM ---------------------------------------------------------


def _edge_cases():
    row = {"amp_ua": 0, "target_ua": 0, "phase_us": 0, "rate_hz": 0, "delivered_ua": 0, "pulses": 0,
           "max_charge_pc": 0, "net_pc": 0}
    heat = {"state": "off", "target_mc": 40000, "duty_permille": 0, "cem43_ms": 0, "pad_true_mc": 22000,
            "valid": True, "value_mc": 21990}
    out = []
    for n in (1, 2):
        for net in (0, -1, -999, -1000, -1001, 1001, -(2**70)):
            rows = [dict(row, net_pc=net, max_charge_pc=2**65, amp_ua=2**40) for _ in range(n)]
            out.append({"t_ms": 0, "state": "IDLE", "faults": [], "sim_faults": [], "rx": [], "channels": rows,
                        "heat": None})
        for name in TRICKY:
            out.append({"t_ms": 99999, "state": name, "faults": [name, "overcurrent"], "sim_faults": [name],
                        "rx": [{name: [1, {"k": name, "n": None, "b": True}], "ok": False}],
                        "channels": [dict(row) for _ in range(n)], "heat": dict(heat, state=name, valid=False)})
    return out


def _random_cases(count, seed):
    rng = random.Random(seed)
    alphabet = ["a", "Z", "_", '"', "\\", "\x00", "\x1f", "\x7f", "é", "温", "\U0001f600", " "]

    def name():
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6)))

    def number():
        return rng.choice([0, rng.randrange(-2000, 2000), rng.randrange(-(2**40), 2**40), rng.randrange(-(2**80), 2**80)])

    def value(depth):
        kind = rng.randrange(6 if depth < 3 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return number()
        if kind in (2, 3):
            return name()
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randrange(3))]
        return {name(): value(depth + 1) for _ in range(rng.randrange(3))}

    out = []
    for _ in range(count):
        n = rng.choice([1, 2])
        heat = None
        if rng.random() < 0.7:
            heat = {"state": rng.choice(["off", "heating", name()]), "target_mc": number(),
                    "duty_permille": number(), "cem43_ms": number(), "pad_true_mc": number(),
                    "valid": rng.random() < 0.7, "value_mc": number()}
        out.append({
            "t_ms": rng.randrange(0, 10**9),
            "state": rng.choice(["IDLE", "RUNNING", name()]),
            "faults": [name() for _ in range(rng.choice([0, 0, 1, 3]))],
            "sim_faults": [name() for _ in range(rng.choice([0, 0, 1, 2]))],
            "rx": [{name(): value(1) for _ in range(rng.randrange(4))} for _ in range(rng.choice([0, 0, 1, 2]))],
            "channels": [{key: number() for key in ("amp_ua", "target_ua", "phase_us", "rate_hz", "delivered_ua",
                                                    "pulses", "max_charge_pc", "net_pc")} for _ in range(n)],
            "heat": heat,
        })
    return out


@pytest.mark.micropython
def test_trace_line_in_the_micropython_vm(tmp_path):
    all_cases = _edge_cases() + _random_cases(300, seed=20240611)
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(case) + "\n" for case in all_cases))  # ASCII: astral as surrogate pairs
    proc = subprocess.run(
        [_micropython_or_fail(), "-X", "heapsize=" + VM_TEST_HEAP, str(ROOT / "tests" / "trace_fakes.py"), str(path)],
        cwd=ROOT, env=_vm_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines and lines[-1] == "DONE %d" % len(all_cases), proc.stdout[-3000:] + proc.stderr[-3000:]
    diffs = [line for line in lines if line.startswith("DIFF")]
    assert not diffs, "fast != reference inside the VM:\n" + proc.stdout[-3000:]
    vm_lines = [line for line in lines if line.startswith("OK ")]
    assert len(vm_lines) == len(all_cases)
    for index, case in enumerate(all_cases):
        expected = trace_fakes.reference_line(*trace_fakes.build(case))  # computed by CPython
        assert vm_lines[index] == "OK %d %s" % (index, expected), "case %d differs between runtimes" % index
