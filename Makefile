# IPT outcomes pipeline. `make help` lists the targets.
# Analysis targets are real files: each stage leaves a stamp under $(OUT)/.stamps once it
# has written its outputs, and depends on its inputs, the config and the code of the stage,
# so a second `make report` with nothing changed does no work.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data/demo
OUT ?= reports/demo
CONFIG ?=
PATIENTS ?= 2000
SEED ?= 20261122

CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG))
INSTALLED := $(VENV)/.installed
DEMO_DEP := $(if $(filter data/demo,$(DATA)),data/demo/patients.csv)
DATA_FILES := $(DEMO_DEP) $(filter-out $(DEMO_DEP),$(wildcard $(DATA)/*.csv $(DATA)/*.parquet))
STAMPS := $(OUT)/.stamps
CORE := pipeline/io.py pipeline/ingest/clean.py pipeline/ingest/validate.py pipeline/cli.py \
        $(wildcard pipeline/config/*.py) pipeline/outcomes/definitions.py pipeline/runner/stages.py $(wildcard data_schemas/*.py data_schemas/outputs/*.py) \
        $(wildcard pipeline/sharing/*.py) pipeline/estimability.py pipeline/runner/run_folder.py \
        data_schemas/instruments.csv
OUTCOME_CODE := pipeline/outcomes/rates.py pipeline/outcomes/tables.py pipeline/report/outcome_plots.py \
        pipeline/report/figures.py pipeline/report/findings.py
MODEL_CODE := $(wildcard pipeline/trajectories/*.py) pipeline/report/trajectory_plots.py \
        $(wildcard pipeline/trajectories/engines/*.py)
RELAPSE_CODE := $(wildcard pipeline/relapse/*.py) pipeline/report/relapse_plots.py
AUDIT_CODE := $(wildcard pipeline/audit/*.py) pipeline/report/audit_plots.py
REPORT_CODE := pipeline/report/html.py pipeline/report/findings.py pipeline/report/manifest.py \
        pipeline/trajectories/means.py \
        $(wildcard pipeline/report/templates/*)
PAPER_CODE := $(wildcard pipeline/report/paper_*.py) pipeline/report/html.py

.DEFAULT_GOAL := help
.PHONY: help install demo validate outcomes models relapse audit report paper run dictionary \
        test test-fast lint notebooks validate-stats bench bench-sharing bench-e2e clean browser-deps \
        latex-deps

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "variables: DATA=$(DATA) OUT=$(OUT) CONFIG=$(CONFIG) PATIENTS=$(PATIENTS) SEED=$(SEED)"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install the project (editable) with dev tools

data/demo/patients.csv: | $(INSTALLED)
	$(BIN)/ipt-outcomes demo --out data/demo --patients $(PATIENTS) --seed $(SEED)

demo: data/demo/patients.csv ## write the synthetic demo cohort to data/demo (if missing)

$(STAMPS)/validate: $(INSTALLED) $(DATA_FILES) $(CORE) $(CONFIG)
	$(BIN)/ipt-outcomes validate $(DATA) --out $(OUT) $(CONFIG_ARG)
	@mkdir -p $(@D) && touch $@

$(STAMPS)/outcomes: $(STAMPS)/validate $(CONFIG) $(OUTCOME_CODE)
	$(BIN)/ipt-outcomes outcomes $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/models: $(STAMPS)/validate $(CONFIG) $(MODEL_CODE)
	$(BIN)/ipt-outcomes models $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/relapse: $(STAMPS)/validate $(CONFIG) $(RELAPSE_CODE)
	$(BIN)/ipt-outcomes relapse $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/audit: $(STAMPS)/validate $(CONFIG) $(AUDIT_CODE)
	$(BIN)/ipt-outcomes audit $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(OUT)/report.html: $(STAMPS)/outcomes $(STAMPS)/models $(STAMPS)/relapse $(STAMPS)/audit $(REPORT_CODE)
	$(BIN)/ipt-outcomes report --out $(OUT)
	@touch $@

validate: $(STAMPS)/validate ## validate DATA into OUT/validation
outcomes: $(STAMPS)/outcomes ## per-patient outcomes and rate tables into OUT/tables
models: $(STAMPS)/models ## mixed-effects trajectory models into OUT/tables
relapse: $(STAMPS)/relapse ## relapse survival analysis into OUT/tables
audit: $(STAMPS)/audit ## clinic audit into OUT/audit
$(OUT)/paper/tables.docx: $(STAMPS)/outcomes $(STAMPS)/models $(STAMPS)/relapse $(STAMPS)/audit $(PAPER_CODE)
	$(BIN)/ipt-outcomes paper --out $(OUT)
	@touch $@

report: $(OUT)/report.html $(OUT)/paper/tables.docx ## everything, then OUT/report.html and OUT/paper/ (only what changed is redone)
	@echo "open $(OUT)/report.html; tables for papers in $(OUT)/paper/"
paper: $(OUT)/paper/tables.docx ## tables for papers (LaTeX, Word) into OUT/paper

run: | $(INSTALLED) $(DEMO_DEP) ## the whole pipeline in one process (ignores stamps)
	$(BIN)/ipt-outcomes run $(DATA) --out $(OUT) $(CONFIG_ARG)

dictionary: | $(INSTALLED) ## regenerate data_schemas/DATA_DICTIONARY.md and templates
	$(BIN)/ipt-outcomes dictionary --out data_schemas

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=900

browser-deps: ## install Debian's chromium (for the report's browser check) if missing
	@command -v chromium >/dev/null || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq chromium >/dev/null; }

latex-deps: ## install pdflatex with booktabs and caption (the paper tables' check) if missing
	@command -v pdflatex >/dev/null || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq --no-install-recommends texlive-latex-recommended >/dev/null; }

test: browser-deps latex-deps | $(INSTALLED) ## the test suite (notebooks, browser, LaTeX included)
	$(BIN)/pytest -q -n 2

test-fast: | $(INSTALLED) ## the test suite without notebooks, the browser and LaTeX checks
	$(BIN)/pytest -q -n 2 -m "not notebook and not browser and not latex"

lint: | $(INSTALLED) ## ruff and mypy on pipeline/ and data_schemas/
	$(BIN)/ruff check pipeline data_schemas tests bench
	$(BIN)/mypy pipeline data_schemas

notebooks: | $(INSTALLED) $(DEMO_DEP) ## render the notebooks to HTML under reports/notebooks
	$(BIN)/jupyter nbconvert --to html --execute --output-dir reports/notebooks notebooks/*.ipynb

validate-stats: | $(INSTALLED) ## slow statistical validation (coverage of mixed-model CIs, 200 replicates)
	$(BIN)/pytest -q -m slow tests/slow

bench: | $(INSTALLED) ## mixed-model benchmark: 1e3..1e6 patients (and lme4 where R is installed)
	$(BIN)/python bench/mixed.py

bench-sharing: | $(INSTALLED) ## complementary suppression of the shared tables, 600..20,000 patients
	$(BIN)/python bench/sharing.py

bench-e2e: | $(INSTALLED) ## whole pipeline at 1e4, 1e5, 1e6 patients -> bench/results/e2e.json
	$(BIN)/python bench/e2e.py

clean: ## remove generated reports and the demo data (keeps .venv)
	rm -rf data/demo reports/demo reports/notebooks
