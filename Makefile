# Two entry points for a fresh machine (README Quickstart): `make demo` and `make test`.
# Everything installs into .venv from pyproject.toml; a stamp file re-installs when it changes.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: study study-quick browser demo test test-fast test-slow lint typecheck ci-stat example serve-bench clean

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then PYTHON=$$(scripts/find-python.sh) && $$PYTHON -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: set up, then validate, fit and export the shipped example diary into reports/demo
demo: $(STAMP)
	$(VENV)/bin/hbm demo --out reports/demo

## test: set up, lint, type-check, fast tests, then the small SBC and recovery checks CI runs
test: $(STAMP) browser lint typecheck test-fast ci-stat

## browser: Debian's chromium for the report test (as root, or through sudo)
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check hbm tests benchmarks
	$(VENV)/bin/ruff format --check hbm tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q

## ci-stat: the reduced statistical checks (small SBC, small recovery) that CI runs
ci-stat: $(STAMP)
	$(VENV)/bin/pytest -q -m ci_stat

## test-slow: full statistical checks (recovery 50x365, SBC with 100 simulations, both regimes)
test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

## example: regenerate the shipped example diary (documented in data/README.md)
example: $(STAMP)
	$(VENV)/bin/hbm simulate --users 40 --days 365 --seed 20261126 --out data/example_diary.csv

## study: the full personalization study (50 users x {90, 365, 1000} days x heterogeneity {0, 0.3, 0.6})
study: $(STAMP)
	$(VENV)/bin/hbm study --out reports/study

study-quick: $(STAMP)
	$(VENV)/bin/hbm study --quick --out reports/study-quick

## serve-bench: 1,000 loopback requests against `hbm serve reports/demo` (run `make demo` first)
serve-bench: $(STAMP)
	$(PY) -m benchmarks.service_latency reports/demo --out reports/demo/service_latency.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
