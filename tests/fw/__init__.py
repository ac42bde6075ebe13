"""Portable firmware tests: plain `test_*` functions with plain asserts.

They run under CPython (collected by pytest) and inside the MicroPython VM
(`micropython tests/mp_runner.py`, driven by tests/test_micropython_vm.py), so
they use only the language subset both runtimes share: no pytest imports, no
fixtures, no dataclasses/typing. Shared helpers live in `portable`, `harness` and
`invariants` (the per-tick safety checker, shared with the audit replays).
"""
