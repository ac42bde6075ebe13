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

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache .hypothesis
