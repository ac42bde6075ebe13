"""What tensctl itself checks of an amplitude before sending it (docs/safety.md, row "A pulse
carries too much current...", layer 5), and what it shows when the device's envelope refuses one.

tensctl checks an amplitude only against the device's `amp_limit_ua` (80 mA, from the hello
reply), in `tensctl amp` and `tensctl start --amp` (host/cli.py `_check_amp`): above it the
command is a usage error (exit 2) and no amplitude request goes out. It does not check the
channel's envelope (`max_amp_ua` of its setting): an amplitude under 80 mA that the envelope
refuses goes to the device, whose `envelope` refusal tensctl shows naming the limit, the value
and the limit (exit 1), with nothing changed on the device.
"""

import json
from contextlib import contextmanager
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import envelope as E
from firmware import limits as L
from host.cli import cli
from host.client import Client
from sim.launcher import start_server

AMP_OPS = ("set_amp", "amp_step", "start")
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# a long phase at a high rate on small electrodes: the envelope allows 44.721 mA (current density)
LONG_FAST_SMALL = {"phase_us": 400, "rate_hz": 250, "area_cm2": 10}


def invoke(*args):
    return CliRunner().invoke(cli, list(args), env={"TENSCTL_PORT": None}, catch_exceptions=False)


@contextmanager
def recording():
    """Every request tensctl sends, as (op, fields), in order."""
    sent = []
    real = Client.request

    def request(self, op, **fields):
        sent.append((op, fields))
        return real(self, op, **fields)

    with patch.object(Client, "request", request):
        yield sent


def ma_text(amp_ua):
    return "%d.%03d" % (amp_ua // 1000, amp_ua % 1000)


def amp_requests(sent):
    return [entry for entry in sent if entry[0] in AMP_OPS]


# ---- the check tensctl makes: the device's 80 mA limit, before sending ------------------------


@PROFILE
@given(amp_ua=st.one_of(st.integers(L.AMP_LIMIT_UA + 1, 999999), st.just(L.AMP_LIMIT_UA + 1)),
       command=st.sampled_from(["amp", "start"]))
def test_an_amplitude_over_the_device_limit_is_refused_before_anything_is_sent(amp_ua, command):
    args = ["amp", "0", ma_text(amp_ua)] if command == "amp" else ["start", "--amp", ma_text(amp_ua)]
    with recording() as sent:
        result = invoke("--port", "sim", "--json", *args)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"]["kind"] == "usage"
    assert "exceeds this device's amplitude limit of 80.0 mA (80000 µA)" in document["error"]["message"]
    assert [op for op, _ in sent] == ["hello"]  # the only request: nothing that sets an amplitude


@PROFILE
@given(amp_ua=st.one_of(st.integers(0, L.AMP_LIMIT_UA), st.just(L.AMP_LIMIT_UA)))
def test_an_amplitude_within_the_device_limit_is_sent_exactly_as_typed(amp_ua):
    with recording() as sent:
        result = invoke("--port", "sim", "--json", "amp", "0", ma_text(amp_ua))
    assert result.exit_code == 0, result.output  # the default setting allows 80 mA
    assert amp_requests(sent) == [("set_amp", {"ch": 0, "amp_ua": amp_ua})]
    assert json.loads(result.stdout)["target_ua"] == amp_ua


# ---- an amplitude the envelope refuses: the device's refusal, shown --------------------------


@pytest.fixture(scope="module")
def served():
    with start_server(runtime="cpython", speed=20, pty=True) as server:
        yield server


def run_json(served, *args, expect=0):
    result = invoke("--port", served.url, "--json", *args)
    assert result.exit_code == expect, (args, result.output)
    return json.loads(result.stdout)


def channel_targets(served):
    return [channel["target_ua"] for channel in run_json(served, "status")["ch"]]


def test_an_amplitude_the_envelope_refuses_is_shown_as_the_devices_refusal_naming_the_limit(served):
    reply = run_json(served, "stim", "0", "--set", json.dumps(LONG_FAST_SMALL))
    top = reply["max_amp_ua"]
    setting = E.parse_setting(LONG_FAST_SMALL)
    assert top == E.max_amp_ua(setting) < L.AMP_LIMIT_UA and reply["binding_limit"] == "current_density"
    run_json(served, "amp", "0", ma_text(top - 500))
    run_json(served, "amp", "1", "1.5")
    before = channel_targets(served)
    for args, op, amp_ua in (
        (["amp", "0", ma_text(top + 1)], "set_amp", top + 1),
        (["amp", "0", "60"], "set_amp", 60000),
        (["up", "0", "--steps", "2"], "amp_step", top + 500),
        (["start", "--amp", "60"], "start", 60000),
    ):
        document = run_json(served, *args, expect=1)
        error = document["error"]
        figure = E.Envelope(setting, amp_ua).current_density_ua_cm2
        assert error["kind"] == "device_error" and error["code"] == "envelope", error
        assert error["limit"] == "current_density" and error["unit"] == "uA/cm2", error
        assert error["value"] == figure > error["limit_value"] == L.CURRENT_DENSITY_LIMIT_UA_CM2, error
        assert error["message"].startswith("device refused %s, outside the safety envelope: " % op), error
        assert "at %d uA" % amp_ua in error["message"], error
        assert channel_targets(served) == before and run_json(served, "status")["state"] == "IDLE"
    human = invoke("--port", served.url, "amp", "0", "60")
    assert human.exit_code == 1 and "outside the safety envelope" in human.stderr
    assert "current_density" in human.stderr and "exceeds the limit 2000 uA/cm2" in human.stderr
