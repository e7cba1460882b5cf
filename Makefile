# `make train` and `make test` work on a fresh clone: they create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install browser data train test fuzz lint clean-venv

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

# stroke-serve's browser test drives Debian's Chromium through Playwright (whose own browser
# download cannot work offline): installed with apt when missing; the test skips, saying
# why, only where that is impossible (no apt, no sudo)
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  command -v apt-get >/dev/null \
	    && $$SUDO apt-get update -q \
	    && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || echo "make: could not install chromium; the browser test of stroke-serve will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest $(ARGS)

# the fuzzing harness, every case (docs/reliability.md#the-fuzzing-harness); make test runs
# its fast subset. ARGS: --kind csv, --jobs 4, --keep DIR ...
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stroke tests
	$(BIN)/ruff format --check stroke tests
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
