# Two entry points for a fresh machine (README Quickstart): `make demo` and `make test`.
# Everything installs into .venv from pyproject.toml; a stamp file re-installs when it changes.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: study study-quick browser demo test test-fast test-heavy test-slow lint typecheck ci-stat example serve-bench clean mutation mutation-ci

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then PYTHON=$$(scripts/find-python.sh) && $$PYTHON -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: set up, then validate, fit and export the shipped example diary into reports/demo
demo: $(STAMP)
	$(VENV)/bin/hbm demo --out reports/demo

## test: set up, lint, type-check, fast tests, the heavy compile tests, the small SBC and recovery
## checks, the CI mutation subset
test: $(STAMP) browser lint typecheck test-fast test-heavy ci-stat mutation-ci

## browser: Debian's chromium for the report test (as root, or through sudo)
browser:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check hbm tests benchmarks scripts
	$(VENV)/bin/ruff format --check hbm tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q

## test-heavy: tests that build several models or start compile processes (marker heavy)
test-heavy: $(STAMP)
	$(VENV)/bin/pytest -q -m heavy

## ci-stat: the reduced statistical checks (small SBC, small recovery) that CI runs
ci-stat: $(STAMP)
	$(VENV)/bin/pytest -q -m ci_stat

## test-slow: full statistical checks (recovery 50x365, SBC with 100 simulations, both regimes)
test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

## example: regenerate the shipped example diary (documented in data/README.md)
example: $(STAMP)
	$(VENV)/bin/hbm simulate --users 40 --days 365 --seed 20261126 --clustering 1.0 \
	  --clustering-spread 0.3 --attack-days 1.3 --premonitory fatigue --out data/example_diary.csv

## study: the full personalization study (50 users x {90, 365, 1000} days x heterogeneity {0, 0.3, 0.6})
study: $(STAMP)
	$(VENV)/bin/hbm study --out reports/study

study-quick: $(STAMP)
	$(VENV)/bin/hbm study --quick --out reports/study-quick

## serve-bench: 1,000 loopback requests against `hbm serve reports/demo` (run `make demo` first)
serve-bench: $(STAMP)
	$(PY) -m benchmarks.service_latency reports/demo --out reports/demo/service_latency.json

## mutation: mutmut on every module that decides what users receive (pyproject [tool.mutmut]);
## scores per module and each survivor's diff and reason in reports/mutation/survivors.md
mutation: $(STAMP)
	@rm -rf mutants && mkdir -p reports/mutation
	$(VENV)/bin/mutmut run --max-children 2 > reports/mutation/run.log 2>&1 || { tail -40 reports/mutation/run.log; exit 1; }
	$(PY) scripts/mutation_report.py --out reports/mutation/survivors.md

## mutation-ci: the subset CI runs (the gate, decide, trigger classes and confidence), same threshold
MUTATION_CI := 'hbm.inference.diagnostics*' 'hbm.evaluation.decide*' 'hbm.results.tables.x_classify*' 'hbm.results.tables.x__confidence*' 'hbm.results.tables.x_confidence_of*'
mutation-ci: $(STAMP)
	@rm -rf mutants && mkdir -p reports/mutation
	$(VENV)/bin/mutmut run --max-children 2 $(MUTATION_CI) > reports/mutation/run-ci.log 2>&1 || { tail -40 reports/mutation/run-ci.log; exit 1; }
	$(PY) scripts/mutation_report.py --only $(MUTATION_CI) --out reports/mutation/survivors-ci.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
