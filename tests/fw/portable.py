"""The little a portable test needs beyond `assert` (MicroPython-compatible)."""


def raises(exc_type, fn, *args, **kwargs):
    """Call fn(*args, **kwargs); return the exception it raised, which must be an exc_type.

    Fails (AssertionError) when fn returns normally or raises something else.
    """
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - reported, not swallowed
        raise AssertionError(
            "%s raised %s(%s), expected %s" % (_name(fn), type(exc).__name__, exc, exc_type.__name__)
        )
    raise AssertionError("%s did not raise %s" % (_name(fn), exc_type.__name__))


def _name(fn):
    return getattr(fn, "__name__", "call")


def is_ascii_printable(text):
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) > 0x7E:
            return False
    return True


class Lcg:
    """Tiny deterministic generator for table-free 'random' cases on both runtimes."""

    def __init__(self, seed=12345):
        self.state = seed & 0x7FFFFFFF

    def below(self, n):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n
