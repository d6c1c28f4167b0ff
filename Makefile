# The two commands: `make run` and `make test`. Both set up .venv first when needed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= default
# The venv is (re)installed only when requirements.txt or pyproject.toml change (content hash).
STAMP := $(VENV)/.installed

.PHONY: run test setup clean-runs lab bench

setup:
	@want="$$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"; \
	if [ -x $(PY) ] && [ -f $(STAMP) ] && [ "$$(cat $(STAMP))" = "$$want" ]; then \
	  echo "venv up to date ($(VENV))"; \
	else \
	  echo "setting up $(VENV) from requirements.txt (a few minutes the first time)"; \
	  [ -x $(PY) ] || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt; \
	  $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .; \
	  echo "$$want" > $(STAMP); \
	fi

# Run every notebook headless on $(PROFILE): executed copies in outputs/notebooks/, summary in outputs/summary.md.
run: setup
	$(PY) -m s2i_lib notebooks --profile $(PROFILE) --output-dir outputs

# The import contracts (.importlinter, in seconds), then unit tests + nbval over every notebook on
# the smoke profile.
test: setup
	$(VENV)/bin/lint-imports --no-cache
	S2I_PROFILE=smoke $(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean-runs:
	rm -rf runs/$(PROFILE)
