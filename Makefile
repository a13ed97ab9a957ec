# FusionDesk — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.fusiondesk-lock-$(shell sha256sum $(LOCK) 2>/dev/null | cut -c1-16)
PYTEST_ARGS ?=

# Every process the project starts runs offline and without telemetry.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export USE_TF := 0
export RASA_TELEMETRY_ENABLED := false
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export OMP_WAIT_POLICY := PASSIVE
export TF_CPP_MIN_LOG_LEVEL := 2

# Python 3.10: `python3.10` on PATH (pyenv shims honour .python-version), else pyenv's 3.10.
PYTHON310 := $(shell command -v python3.10 2>/dev/null || ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null | tail -n 1)

.PHONY: help install venv train run test test-fast lint format lock bench-smoke clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

# The stamp's name carries the lock file's hash, so the lock is an order-only prerequisite: a
# fresh clone (every file new) must not rebuild a cached venv whose lock content is the same.
$(STAMP): | $(LOCK)
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "error: Python 3.10 not found. Rasa 3.6 needs Python 3.10 (3.11 is not supported)."; \
	  echo "  Install it, e.g. 'pyenv install 3.10.13' (then this folder's .python-version selects it)"; \
	  echo "  or 'apt-get install python3.10 python3.10-venv', and run make again."; \
	  exit 1; fi
	@echo "Creating the environment in $(VENV) with $(PYTHON310) (a few minutes the first time)"
	rm -rf $(VENV)
	$(PYTHON310) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==24.2
	$(BIN)/python -m pip install --no-deps -r $(LOCK)
	$(BIN)/python -m pip check
	$(BIN)/rasa telemetry disable >/dev/null
	touch $(STAMP)

venv: $(STAMP)
	@# (re)link this checkout into the venv (cheap; keeps a shared cached venv pointing here)
	@if [ "$$(cat $(VENV)/.fusiondesk-src 2>/dev/null)" != "$(CURDIR)" ]; then \
	  $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . && echo "$(CURDIR)" > $(VENV)/.fusiondesk-src; fi
	@$(BIN)/python -m bot.webchat_assets --quiet

install: venv ## Create the virtual environment (VENV=path to put it elsewhere)
	@echo "Environment ready: source $(VENV)/bin/activate"

train: venv ## Train the default bot if data or config changed (rasa train)
	$(BIN)/fusiondesk train

run: venv ## Train if needed, then start Rasa (5005), actions (5055) and the web chat (8080)
	$(BIN)/fusiondesk run

test: venv ## Run the whole test suite (slow tests included)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv ## Run the quick tests only
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv ## ruff (lint + format check) and mypy
	$(BIN)/ruff check bot nlu_components actions tests scripts
	$(BIN)/ruff format --check bot nlu_components actions tests scripts
	$(BIN)/mypy

format: venv ## Format the code with ruff
	$(BIN)/ruff format bot nlu_components actions tests scripts
	$(BIN)/ruff check --fix bot nlu_components actions tests scripts

bench-smoke: venv ## Run the benchmarks at smoke size
	$(BIN)/python -m pytest -m slow tests/bench $(PYTEST_ARGS)

lock: ## Regenerate requirements.lock from requirements.in (needs network)
	rm -rf /tmp/fusiondesk-lock-venv && $(PYTHON310) -m venv /tmp/fusiondesk-lock-venv
	/tmp/fusiondesk-lock-venv/bin/pip install --quiet pip==24.2
	/tmp/fusiondesk-lock-venv/bin/pip install -r requirements.in
	( echo "# Exact versions of every package (make lock). Install with: pip install --no-deps -r requirements.lock"; \
	  /tmp/fusiondesk-lock-venv/bin/pip freeze --all | grep -v '^pip==' ) > $(LOCK)

clean: ## Remove trained models and local databases (keeps the venv)
	rm -rf models/ .rasa/ fusiondesk.db results/
