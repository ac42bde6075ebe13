# One command each on a fresh machine: every target builds .venv first when it is
# missing or older than pyproject.toml.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench firmware fuzz clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m host.demo

test: $(STAMP)
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
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .hypothesis
