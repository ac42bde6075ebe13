"""firmware.protocols.messages: builders, ids, field checks, versions."""

from firmware.protocols import frame
from firmware.protocols import messages as msg
from tests.fw.portable import is_ascii_printable, raises


def _err(fn, *args):
    return raises(msg.RequestError, fn, *args)


def test_version_constants():
    assert msg.PROTO_VERSION == "%d.%d" % (msg.PROTO_MAJOR, msg.PROTO_MINOR)
    assert msg.PROTO_MAJOR in msg.SUPPORTED_MAJORS


def test_ops_listed():
    ops = ("hello", "status", "start", "stop", "estop", "pause", "resume", "set_amp", "amp_step", "set_stim",
           "get_stim", "keepalive", "clear_fault", "heat", "telemetry", "settings", "maintenance",
           "programs", "program_get", "program_put", "program_delete", "log_info", "log_fetch", "log_erase", "pain", "pin")
    assert tuple(msg.OPS) == ops
    for op in (msg.OP_HELLO, msg.OP_STATUS, msg.OP_START, msg.OP_STOP, msg.OP_ESTOP, msg.OP_PAUSE, msg.OP_RESUME,
               msg.OP_SET_AMP, msg.OP_AMP_STEP, msg.OP_SET_STIM, msg.OP_GET_STIM, msg.OP_KEEPALIVE, msg.OP_CLEAR_FAULT, msg.OP_HEAT,
               msg.OP_TELEMETRY, msg.OP_SETTINGS, msg.OP_MAINTENANCE):
        assert op in msg.OPS


def test_error_codes():
    assert msg.E_ENVELOPE == "envelope"
    assert msg.PROTO_VERSION == "0.4"


def test_builders():
    assert msg.request(4, "set_amp", {"ch": 0, "amp_ua": 5}) == {"id": 4, "op": "set_amp", "ch": 0, "amp_ua": 5}
    assert msg.request(5, "status") == {"id": 5, "op": "status"}
    assert msg.reply_ok(4, {"state": "IDLE"}) == {"id": 4, "ok": True, "state": "IDLE"}
    assert msg.reply_ok(4) == {"id": 4, "ok": True}
    assert msg.reply_error(4, msg.E_BAD_FIELD, "text") == {"id": 4, "ok": False, "err": "bad_field", "msg": "text"}
    assert msg.event(msg.EV_STATE, {"state": "FAULT"}) == {"ev": "state", "state": "FAULT"}
    assert msg.event(msg.EV_RX_ERROR) == {"ev": "rx_error"}


def test_request_error_fields():
    err = msg.RequestError(msg.E_BAD_STATE, "why")
    assert err.code == "bad_state" and err.message == "why" and str(err) == "why"


def test_is_int():
    assert msg.is_int(0) and msg.is_int(-3) and msg.is_int(1 << 40)
    assert not msg.is_int(True) and not msg.is_int(1.0) and not msg.is_int("1") and not msg.is_int(None)


def test_request_id_valid():
    assert msg.request_id_of({"id": 1}) == 1
    assert msg.request_id_of({"id": msg.MAX_REQUEST_ID}) == msg.MAX_REQUEST_ID


def test_request_id_invalid():
    for bad in ({}, {"id": 0}, {"id": -1}, {"id": msg.MAX_REQUEST_ID + 1}, {"id": True}, {"id": "1"}, {"id": 1.0}):
        err = _err(msg.request_id_of, bad)
        assert err.code == msg.E_BAD_REQUEST, bad
        assert "id" in err.message and str(msg.MAX_REQUEST_ID) in err.message


def test_int_field_ok_and_default():
    assert msg.int_field({"amp_ua": 0}, "amp_ua", 0, 10) == 0
    assert msg.int_field({"amp_ua": 10}, "amp_ua", 0, 10) == 10
    assert msg.int_field({}, "ch", 0, 1, default=1) == 1


def test_int_field_missing_names_field_and_range():
    err = _err(msg.int_field, {}, "amp_ua", 0, 60000)
    assert err.code == msg.E_BAD_FIELD
    assert "amp_ua" in err.message and "60000" in err.message and "missing" in err.message
    err = _err(msg.int_field, {"amp_ua": None}, "amp_ua", 0, 60000)
    assert err.code == msg.E_BAD_FIELD


def test_int_field_wrong_type_names_field_and_value():
    cases = (("12", "'12'"), (1.5, "1.5"), (True, "got true"), (False, "got false"), ([1], "list"), ({"a": 1}, "object"))
    for value, shown in cases:
        err = _err(msg.int_field, {"amp_ua": value}, "amp_ua", 0, 60000)
        assert err.code == msg.E_BAD_FIELD, value
        assert "amp_ua" in err.message and shown in err.message, err.message


def test_int_field_above_limit_names_value_and_limit():
    err = _err(msg.int_field, {"amp_ua": 60001}, "amp_ua", 0, 60000)
    assert err.code == msg.E_OUT_OF_RANGE
    assert err.message == "amp_ua 60001 exceeds the limit 60000"


def test_int_field_below_minimum_names_value_and_minimum():
    err = _err(msg.int_field, {"ch": -1}, "ch", 0, 1)
    assert err.code == msg.E_OUT_OF_RANGE
    assert err.message == "ch -1 is below the minimum 0"


def test_parse_version():
    assert msg.parse_version("0.1") == (0, 1)
    assert msg.parse_version("12.345") == (12, 345)


def test_parse_version_rejects():
    for bad in ("", "0", "0.", ".1", "0.1.2", "a.b", "-1.0", "+1.0", " 0.1", "0.1 ", "1" * 12 + ".0", "0x1.0"):
        err = _err(msg.parse_version, bad)
        assert err.code == msg.E_BAD_FIELD, bad
    for bad in (1, 0.1, None, ["0", "1"]):
        assert _err(msg.parse_version, bad).code == msg.E_BAD_FIELD


def test_parse_version_rejects_non_ascii_digits():
    # CPython's str.isdigit() accepts these; int() then raised ValueError (or read them)
    for bad in ("\u00b2.1", "0.\u00b9", "\uff11.0", "\u0661.0"):
        err = _err(msg.parse_version, bad)
        assert err.code == msg.E_BAD_FIELD
        assert is_ascii_printable(err.message)


def test_error_texts_are_bounded_ascii():
    # whatever a host sends, the error reply must still fit in one frame
    nasty = (
        "\U0001F600" * 60,
        "\u00e9" * 300,
        "\x00\x01" * 100,
        10 ** 400,
        -(10 ** 400),
        1e300,
        [1] * 200,
        {"k": "v"},
    )
    for value in nasty:
        for fn, args in (
            (msg.int_field, ({"amp_ua": value}, "amp_ua", 0, 60000)),
            (msg.request_id_of, ({"id": value},)),
            (msg.parse_version, (value,)),
        ):
            err = _err(fn, *args)
            assert is_ascii_printable(err.message), err.message
            assert len(err.message) <= 120, err.message
            frame.encode_frame(msg.reply_error(msg.MAX_REQUEST_ID, err.code, err.message))


def test_clip():
    assert msg.clip("plain") == "plain"
    assert msg.clip("x" * 100) == "x" * 37 + "..."
    assert len(msg.clip("x" * 100, 10)) == 10
    assert msg.clip("caf\u00e9") == "caf\\xe9"
    assert msg.clip("\u2603") == "\\u2603"
    assert msg.clip("\U0001F600") == "\\ud83d\\ude00"
    assert msg.clip("a\nb") == "a\\x0ab"
