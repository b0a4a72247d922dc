# IPT outcomes pipeline. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data/demo
OUT ?= reports/demo
CONFIG ?=
PATIENTS ?= 2000
SEED ?= 20261122

.DEFAULT_GOAL := help
.PHONY: help install demo validate outcomes dictionary test lint clean
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG))
DEMO_DEP := $(if $(filter data/demo,$(DATA)),data/demo/patients.csv)

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "variables: DATA=$(DATA) OUT=$(OUT) CONFIG=$(CONFIG) PATIENTS=$(PATIENTS) SEED=$(SEED)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project (editable) with dev tools

data/demo/patients.csv: $(VENV)/.installed pipeline/demo.py
	$(BIN)/ipt-outcomes demo --out data/demo --patients $(PATIENTS) --seed $(SEED)

demo: data/demo/patients.csv ## write the synthetic demo cohort to data/demo

validate: $(VENV)/.installed $(DEMO_DEP) ## validate DATA into OUT/validation
	$(BIN)/ipt-outcomes validate $(DATA) --out $(OUT)

outcomes: $(VENV)/.installed $(DEMO_DEP) ## per-patient outcomes and rate tables into OUT/tables
	$(BIN)/ipt-outcomes outcomes $(DATA) --out $(OUT) $(CONFIG_ARG)

dictionary: $(VENV)/.installed ## regenerate data_schemas/DATA_DICTIONARY.md and templates
	$(BIN)/ipt-outcomes dictionary --out data_schemas

test: $(VENV)/.installed ## run the test suite
	$(BIN)/pytest -q -n 2

lint: $(VENV)/.installed ## ruff and mypy on pipeline/ and data_schemas/
	$(BIN)/ruff check pipeline data_schemas tests
	$(BIN)/mypy pipeline data_schemas

clean: ## remove generated reports and the demo data (keeps .venv)
	rm -rf data/demo reports/demo
