"""firmware.protocols.jsondec: strict JSON, identical on both runtimes."""

from firmware.protocols import jsondec, jsonenc
from tests.fw.portable import raises


def test_values():
    assert jsondec.decode('{"a":[1,-2,0,true,false,null,"x"]}') == {"a": [1, -2, 0, True, False, None, "x"]}
    assert jsondec.decode(' { "a" : { } , "b" : [ ] } ') == {"a": {}, "b": []}
    assert jsondec.decode("12345678901234567890123") == 12345678901234567890123


def test_escapes_and_surrogates():
    assert jsondec.decode('"a\\"b\\\\c\\/d\\n\\t\\u00e9"') == 'a"b\\c/d\n\t\u00e9'
    assert jsondec.decode('"\\ud83d\\ude00"') == "\U0001F600"


def test_round_trip_with_the_encoder():
    value = {"id": 7, "op": "st\u00e9", "list": [0, -1, None, True, {"k": "v\u2603"}], "big": 10**30}
    assert jsondec.decode(jsonenc.encode(value)) == value


def test_non_integers_keep_their_text():
    value = jsondec.decode('{"a":1.5,"b":2e3,"c":-0.0}')
    assert isinstance(value["a"], jsondec.NonInteger) and value["a"].text == "1.5"
    assert value["b"].text == "2e3" and value["c"].text == "-0.0"


def test_rejects_what_strict_json_rejects():
    bad = [
        "",
        "{",
        '{"a":1,}',
        "[1,]",
        '{"a" 1}',
        '{"a":1 "b":2}',
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "+1",
        '"\\x61"',
        '"\\u12"',
        '"\\ud800"',
        "{1:2}",
        "NaN",
        "Infinity",
        "tru",
        '{"a":1}x',
        '{"a":1,"a":2}',
        '"tab\there"',
        "[" * 9 + "]" * 9,
    ]
    for text in bad:
        err = raises(jsondec.JsonError, jsondec.decode, text)
        assert "offset" in str(err), (text, str(err))


def test_depth_limit_is_exact():
    ok = "[" * jsondec.MAX_DEPTH + "]" * jsondec.MAX_DEPTH
    assert jsondec.decode(ok) is not None
