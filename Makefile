# Two commands: `make demo` and `make test`. Both install everything into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test lint typecheck unit e2e bench clean

$(STAMP): pyproject.toml
	@echo "make: [1/3] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: [2/3] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: [3/3] installing iamgate and its dependencies (moto, the AWS CLI, test tools);"
	@echo "make:       the first time this takes a few minutes, quietly"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
	@echo "make: installed into $(VENV)"

install: $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

demo: install
	@echo "make: starting iamgate demo; it says what it is doing until the gateway is ready"
	$(BIN)/iamgate demo

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

e2e: install $(CHROMIUM)
	$(BIN)/pytest tests/e2e

test: lint typecheck $(CHROMIUM)
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
