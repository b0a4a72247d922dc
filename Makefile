# IPT outcomes pipeline. `make help` lists the targets.
# Analysis targets are real files that depend on content, not file times: `ipt-outcomes
# stamps` writes $(OUT)/.stamps/<stage>.hash, the hash of the stage's inputs (data files),
# config and code, and rewrites a stamp only when that hash changed. So a second
# `make report` does no work, `touch` on a data file redoes nothing, and an edit of the
# config or of a stage's code redoes what depends on it. Validation runs once: `validate`
# writes $(OUT)/validated/ and every later stage reads it.
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
INSTALLED ?= $(VENV)/.installed
IPT ?= $(BIN)/ipt-outcomes
DEMO_DEP := $(if $(filter data/demo,$(DATA)),data/demo/patients.csv)
STAMPS := $(OUT)/.stamps
STAGE_NAMES := validate outcomes models relapse audit report
HASHES := $(foreach s,$(STAGE_NAMES),$(STAMPS)/$(s).hash)

.DEFAULT_GOAL := help
.PHONY: help install demo validate outcomes models relapse audit report paper run dictionary \
        test test-fast lint notebooks validate-stats bench bench-sharing bench-e2e bench-columnar clean \
        browser-deps \
        latex-deps java-deps

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "variables: DATA=$(DATA) OUT=$(OUT) CONFIG=$(CONFIG) PATIENTS=$(PATIENTS) SEED=$(SEED)"

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED) ## create .venv and install the project (editable) with dev tools

data/demo/patients.csv: | $(INSTALLED)
	$(IPT) demo --out data/demo --patients $(PATIENTS) --seed $(SEED)

demo: data/demo/patients.csv ## write the synthetic demo cohort to data/demo (if missing)

# The stamps are brought up to date whenever make is asked for an analysis target (before
# it decides what to redo, so `make -n` and `make -q` tell the truth); a stamp is rewritten
# only when its hash changed, and the targets below depend on the stamps.
ifneq ($(filter validate outcomes models relapse audit report paper $(OUT)/%,$(MAKECMDGOALS)),)
ifneq ($(wildcard $(DATA)/patients.*),)
ifneq ($(wildcard $(INSTALLED)),)
STAMPED := $(shell $(IPT) stamps $(DATA) --out $(OUT) $(CONFIG_ARG) >&2; echo $$?)
endif
endif
endif

$(HASHES) &: | $(INSTALLED) $(DEMO_DEP)
	$(IPT) stamps $(DATA) --out $(OUT) $(CONFIG_ARG)

$(STAMPS)/validate: $(STAMPS)/validate.hash
	$(IPT) validate $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/outcomes: $(STAMPS)/validate $(STAMPS)/outcomes.hash
	$(IPT) outcomes $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/models: $(STAMPS)/validate $(STAMPS)/models.hash
	$(IPT) models $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/relapse: $(STAMPS)/validate $(STAMPS)/relapse.hash
	$(IPT) relapse $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

$(STAMPS)/audit: $(STAMPS)/validate $(STAMPS)/audit.hash
	$(IPT) audit $(DATA) --out $(OUT) $(CONFIG_ARG)
	@touch $@

ANALYSIS_STAMPS := $(STAMPS)/outcomes $(STAMPS)/models $(STAMPS)/relapse $(STAMPS)/audit

$(OUT)/report.html: $(ANALYSIS_STAMPS) $(STAMPS)/report.hash
	$(IPT) report --out $(OUT)
	@touch $@

validate: $(STAMPS)/validate ## validate DATA into OUT/validation (and OUT/validated/, internal)
outcomes: $(STAMPS)/outcomes ## per-patient outcomes and rate tables into OUT/tables
models: $(STAMPS)/models ## mixed-effects trajectory models into OUT/tables
relapse: $(STAMPS)/relapse ## relapse survival analysis into OUT/tables
audit: $(STAMPS)/audit ## clinic audit into OUT/audit
$(OUT)/paper/tables.docx: $(ANALYSIS_STAMPS) $(STAMPS)/report.hash
	$(IPT) paper --out $(OUT)
	@touch $@

report: $(OUT)/report.html $(OUT)/paper/tables.docx ## everything, then OUT/report.html and OUT/paper/ (only what changed is redone)
	@echo "open $(OUT)/report.html; tables for papers in $(OUT)/paper/"
paper: $(OUT)/paper/tables.docx ## tables for papers (LaTeX, Word) into OUT/paper

run: | $(INSTALLED) $(DEMO_DEP) ## the whole pipeline in one process (reruns only what changed)
	$(IPT) run $(DATA) --out $(OUT) $(CONFIG_ARG)

dictionary: | $(INSTALLED) ## regenerate data_schemas/DATA_DICTIONARY.md and templates
	$(IPT) dictionary --out data_schemas

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=900

browser-deps: ## install Debian's chromium (for the report's browser check) if missing
	@command -v chromium >/dev/null || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq chromium >/dev/null; }

latex-deps: ## install pdflatex with booktabs and caption (the paper tables' check) if missing
	@command -v pdflatex >/dev/null || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq --no-install-recommends texlive-latex-recommended >/dev/null; }

java-deps: ## install a Java runtime (for the Spark local cluster of the columnar route's test) if missing
	@command -v java >/dev/null || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq --no-install-recommends default-jre-headless >/dev/null; }

test: browser-deps latex-deps java-deps | $(INSTALLED) ## the test suite (notebooks, browser, LaTeX, Spark included)
	$(BIN)/pytest -q -n 2

test-fast: java-deps | $(INSTALLED) ## the test suite without notebooks, the browser and LaTeX checks
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

bench-columnar: | $(INSTALLED) ## columnar route (DuckDB) at 1e6 and 1e7 patients -> bench/results/columnar.json
	$(BIN)/python bench/columnar.py

clean: ## remove generated reports and the demo data (keeps .venv)
	rm -rf data/demo reports/demo reports/notebooks
