PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-send bench-publish bench-admin bench-bounces bench-bounce-accuracy bench-archive \
	bench-jekyll clean

run: $(VENV)/.run
	$(BIN)/feedpub check
	$(BIN)/feedpub build
	$(BIN)/feedpub digest preview --since 2025-01-01

test: $(VENV)/.test
	$(BIN)/ruff check --output-format concise feedpub tests
	$(BIN)/python -m pytest

bench: $(VENV)/.run
	$(BIN)/python bench/run.py

bench-send: $(VENV)/.test
	$(BIN)/python bench/send_bench.py

bench-publish: $(VENV)/.test
	$(BIN)/python bench/publish_bench.py

bench-admin: $(VENV)/.test
	$(BIN)/python bench/admin_bench.py

bench-bounces: $(VENV)/.test
	$(BIN)/python bench/bounce_bench.py

bench-archive: $(VENV)/.test
	$(BIN)/python bench/archive_bench.py

# CORPUS: a folder of returned mail with an expected.json (never part of the project)
bench-bounce-accuracy: $(VENV)/.run
	$(BIN)/python bench/bounce_accuracy.py $(or $(CORPUS),$(error CORPUS=DIR is required))

# SITE: a folder with _posts/ (default: the parity fixture); JEKYLL_ARGS: --url, --timezone, --permalink
bench-jekyll: $(VENV)/.run
	$(BIN)/python bench/jekyll_compare.py $(or $(SITE),tests/site/fixtures/jekyll_parity) $(JEKYLL_ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check --output-format concise feedpub tests

$(VENV)/.run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run

clean:
	rm -rf $(VENV) public .feedpub bench/work
