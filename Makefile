# The README's two commands: `make bench` (main job) and `make test`. Both create or reuse .venv/.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
BENCH_OUT ?= runs/latest

.PHONY: bench paper-rows publish-rows paper-tables test test-lowest lint venv clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (a second run costs seconds).
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed, found " + sys.version)'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	# VBench's own code, without its GPU stack, to cross-check dimensions in the tests; pyiqa (MUSIQ, the
	# vbench-models extra) without the training stack its wheel requires (pyproject.toml says why).
	$(VENV)/bin/python -m pip install --quiet --no-deps 'vbench==0.1.5' 'pyiqa==0.1.16'
	touch $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/m4v-bench run --out $(BENCH_OUT)/quality-vs-compute
	$(VENV)/bin/m4v-bench run paper-table4-flops --out $(BENCH_OUT)/paper-table4-flops
	$(VENV)/bin/m4v-bench run flops-curve --out $(BENCH_OUT)/flops-curve

# The paper's Tables 3-5 at toy scale (issue 21). The ablation rows train with the shipped m4v-tiny's recipe,
# steps (15,000) and seed, one torch thread each: `make -j2 paper-tables` trains two rows side by side, 1.6x the
# steps a second on 2 cores of one row with 2 threads ('none': 0.32 s a step each vs 0.26), and the thread count does
# not change the losses (bit for bit over the first 106 steps). -j3 runs three at ~2/3 that speed each (the same
# total, measured), which lets the long rows start early. ~1.3 h a row on its own core; each `train` resumes where
# it stopped and a finished row (its COMPLETE) is not rerun, so after an interruption rerun the same command.
ROWS ?= runs/paper-rows
ROW := $(VENV)/bin/m4v-bench train --model m4v-tiny --threads 1 --quiet --snapshot-every 5000
# The slowest row (parallel: attention and Mamba) starts early, so both lanes stay busy to the end.
PAPER_ROWS := none text-recomposition parallel pure-mamba registers
ROW_ARGS_none := --mixer mamba --set text_recomposition=false --set registers=false
ROW_ARGS_registers := --mixer mamba --set text_recomposition=false
ROW_ARGS_text-recomposition := --mixer mamba --set registers=false
ROW_ARGS_pure-mamba := --mixer mamba
ROW_ARGS_parallel := --mixer parallel
# A row committed under results/paper_rows/ROW (its model, config, record and loss log; outside the package) is
# scored as it is, so the tables need ~10 min instead of ~6 h of training; COMMITTED_ROWS= retrains every row.
COMMITTED_ROWS ?= results/paper_rows
row_dir = $(if $(wildcard $(COMMITTED_ROWS)/$(1)/COMPLETE),$(COMMITTED_ROWS)/$(1),$(ROWS)/$(1))

$(ROWS)/%/COMPLETE: | $(STAMP)
	$(ROW) --out $(ROWS)/$* $(ROW_ARGS_$*)

paper-rows: $(foreach r,$(PAPER_ROWS),$(call row_dir,$(r))/COMPLETE)

# Copies each row trained under ROWS into results/paper_rows/ROW for committing (the files a model is loaded
# from, its training record and loss log; not the 35 MB resumable state or the snapshots).
publish-rows:
	@for r in $(PAPER_ROWS); do \
	  if [ -f $(ROWS)/$$r/COMPLETE ] && [ ! -f $(COMMITTED_ROWS)/$$r/COMPLETE ]; then \
	    mkdir -p $(COMMITTED_ROWS)/$$r && \
	    cp $(ROWS)/$$r/model.safetensors $(ROWS)/$$r/config.json $(ROWS)/$$r/training.json \
	       $(ROWS)/$$r/loss.csv $(COMMITTED_ROWS)/$$r/ && \
	    printf '{"files": ["config.json", "loss.csv", "model.safetensors", "training.json"]}\n' \
	      > $(COMMITTED_ROWS)/$$r/COMPLETE && echo "published $$r"; \
	  fi; \
	done

# One sample cache for the three tables: m4v-tiny is scored once for Tables 3-5, pure Mamba once for 3 and 4.
# Table 4's seconds per video are wall clock at generation: run this on an otherwise idle machine.
PAPER_CACHE ?= $(ROWS)/cache
TABLE := $(VENV)/bin/m4v-bench run --full --cache-dir $(PAPER_CACHE)

paper-tables: paper-rows
	$(TABLE) paper-table3 --out $(BENCH_OUT)/paper-table3 --models $(call row_dir,none) \
	  $(call row_dir,text-recomposition) $(call row_dir,registers) $(call row_dir,pure-mamba) m4v-tiny
	$(TABLE) paper-table4 --out $(BENCH_OUT)/paper-table4 --models \
	  dit-tiny $(call row_dir,parallel) $(call row_dir,pure-mamba) m4v-tiny
	$(TABLE) paper-table5 --out $(BENCH_OUT)/paper-table5

# In parallel (pytest-xdist, one worker per core); a test file's tests stay on one worker, so module-scoped fixtures
# (a shared CLI run) are made once, slowest files first (tests/conftest.py). TEST_WORKERS=0: all in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=10

# The lowest pandas / numpy pyproject allows, over the venv's newest everything else, on the tests of what changed
# between them (pandas 3 keeps NaN through astype(str)): installed into .lowest/, first on the path; the venv untouched.
# `tox -e tests-lowest` resolves a whole environment at those pins instead.
LOWEST := -r tests/lowest-constraints.txt python-dateutil pytz tzdata
LOWEST_TESTS := tests/test_vbench_folders.py tests/test_report_html.py tests/test_compare.py tests/test_plan.py
test-lowest: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --no-deps --upgrade --target .lowest $(LOWEST)
	PYTHONPATH=$(CURDIR)/.lowest $(VENV)/bin/python -c 'import pandas, numpy; print("pandas", pandas.__version__, "numpy", numpy.__version__)'
	PYTHONPATH=$(CURDIR)/.lowest $(VENV)/bin/python -m pytest -q $(LOWEST_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check m4v evaluators benchmarks tests

clean:
	rm -rf $(VENV) runs .pytest_cache .lowest
