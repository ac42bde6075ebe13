"""firmware.protocols.jsonenc: one deterministic JSON text on every runtime."""

import json

from firmware.compat import IS_MICROPYTHON
from firmware.protocols import jsondec, jsonenc
from tests.fw.portable import is_ascii_printable, raises


def test_scalars():
    assert jsonenc.encode(None) == "null"
    assert jsonenc.encode(True) == "true"
    assert jsonenc.encode(False) == "false"
    assert jsonenc.encode(0) == "0"
    assert jsonenc.encode(-17) == "-17"
    assert jsonenc.encode(1 << 40) == "1099511627776"
    assert jsonenc.encode("") == '""'
    assert jsonenc.encode("abc") == '"abc"'


def test_bool_is_not_an_int():
    assert jsonenc.encode([True, 1, False, 0]) == "[true,1,false,0]"


def test_keys_sorted_and_compact():
    assert jsonenc.encode({"b": 1, "a": [1, 2], "c": {"z": None, "y": "x"}}) == (
        '{"a":[1,2],"b":1,"c":{"y":"x","z":null}}'
    )


def test_insertion_order_does_not_matter():
    first = {}
    second = {}
    keys = ["id", "op", "amp_ua", "ch", "zz", "a", "M", "_"]
    for key in keys:
        first[key] = len(key)
    for i in range(len(keys) - 1, -1, -1):
        second[keys[i]] = len(keys[i])
    assert jsonenc.encode(first) == jsonenc.encode(second)


def test_tuples_encode_as_lists():
    assert jsonenc.encode((1, "a", (2,))) == '[1,"a",[2]]'
    assert jsonenc.encode([]) == "[]"
    assert jsonenc.encode({}) == "{}"


def test_escaping():
    assert jsonenc.encode('say "hi"') == '"say \\"hi\\""'
    assert jsonenc.encode("a\\b") == '"a\\\\b"'
    assert jsonenc.encode("\n\t\x00\x1f") == '"\\u000a\\u0009\\u0000\\u001f"'
    assert jsonenc.encode("\x7f") == '"\\u007f"'
    assert jsonenc.encode("caf\u00e9") == '"caf\\u00e9"'
    assert jsonenc.encode("\u20ac") == '"\\u20ac"'
    assert jsonenc.encode("/") == '"/"'


def test_astral_characters_become_surrogate_pairs():
    assert jsonenc.encode("\U0001F600") == '"\\ud83d\\ude00"'


def test_output_is_printable_ascii():
    text = jsonenc.encode({"k\u00e9y": ["\x01", "\u2603", "\U0001F600", '"\\'], "n": -1})
    assert is_ascii_printable(text)


def test_round_trip_through_json_loads():
    values = [
        {"id": 1, "op": "start", "amp_ua": [1000, 0]},
        {"s": 'q"uote\\ back\nslash \u00e9 \u2603', "n": None, "t": True, "f": False},
        [[], {}, [[1]], {"a": {"b": {"c": -3}}}],
    ]
    for value in values:
        assert json.loads(jsonenc.encode(value)) == value


def test_round_trip_astral_through_the_firmware_decoder():
    assert jsondec.decode(jsonenc.encode("\U0001F600")) == "\U0001F600"


def test_lone_surrogates_are_rejected():
    if IS_MICROPYTHON:
        return  # MicroPython strings are UTF-8: they cannot hold a lone surrogate
    raises(ValueError, jsonenc.encode, {"a": chr(0xD800)})


def test_floats_are_rejected():
    for value in (1.5, 0.0, -2.0, [1, 2.5], {"a": 0.5}, {"a": [{"b": 1e3}]}):
        err = raises(ValueError, jsonenc.encode, value)
        assert "float" in str(err) or "no floats" in str(err), str(err)


def test_other_types_are_rejected():
    raises(ValueError, jsonenc.encode, b"bytes")
    raises(ValueError, jsonenc.encode, object())
    raises(ValueError, jsonenc.encode, {1: "int key"})
    raises(ValueError, jsonenc.encode, {"a": {None: 1}})


def test_deterministic_repeat():
    value = {"z": [3, 2, 1], "a": "\u00e9", "m": {"q": None, "b": False}}
    first = jsonenc.encode(value)
    for _ in range(3):
        assert jsonenc.encode(value) == first
