# One command each on a fresh machine: every target builds .venv first when it is
# missing or older than pyproject.toml.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MicroPython's type stubs for the Pico, for the board-only type check (tests/test_static_rp2.py).
# In a folder of their own, never in the venv: their os, time, sys... would shadow the stdlib.
STUBS := .stubs/rp2
STUBS_STAMP := $(STUBS)/.installed
RP2_STUBS := micropython-rp2-rpi-pico-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2

.PHONY: demo test bench firmware fuzz stubs clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(STUBS_STAMP): $(STAMP) Makefile
	rm -rf $(STUBS)
	$(BIN)/pip install --quiet --no-deps --target $(STUBS) $(RP2_STUBS)
	touch $(STUBS_STAMP)

stubs: $(STUBS_STAMP)

demo: $(STAMP)
	$(BIN)/python -m host.demo

test: $(STAMP) $(STUBS_STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m sim.bench

firmware: $(STAMP)
	$(BIN)/python -m host.build_firmware

# Device-level protocol fuzz (tests/fuzz_frames.py): a million random frames into a simulated
# device; exits non-zero with the seed and frame index of any failed check. make fuzz SEED=7 FRAMES=...
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz_frames --frames $(or $(FRAMES),1000000) --seed $(or $(SEED),20240611) --progress 50000

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .hypothesis .stubs
