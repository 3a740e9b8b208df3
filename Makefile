# The README's two commands: `make bench` (main job) and `make test`. Both create or reuse .venv/.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
BENCH_OUT ?= runs/latest

.PHONY: bench test lint venv clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (a second run costs seconds).
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed, found " + sys.version)'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	# VBench's own code, without its GPU stack, only to cross-check weight-free dimensions in the tests.
	$(VENV)/bin/python -m pip install --quiet --no-deps 'vbench==0.1.5'
	touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/m4v-bench run --out $(BENCH_OUT)/quality-vs-compute
	$(VENV)/bin/m4v-bench run paper-table4-flops --out $(BENCH_OUT)/paper-table4-flops
	$(VENV)/bin/m4v-bench run flops-curve --out $(BENCH_OUT)/flops-curve

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check m4v evaluators benchmarks tests

clean:
	rm -rf $(VENV) runs .pytest_cache
