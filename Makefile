# `make train` and `make test` work on a fresh clone: they create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install data train test lint clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch and torchvision resolve together from the registry (see docs/install.md)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the embedded default data: the synthetic head-CT phantom (idempotent, seconds)
data: $(STAMP)
	$(BIN)/stroke-synth

train: data
	$(BIN)/stroke-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stroke tests
	$(BIN)/ruff format --check stroke tests

clean-venv:
	rm -rf $(VENV)
