PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint lock bench bench-send bench-publish bench-admin bench-bounces bench-bounce-accuracy bench-archive \
	bench-jekyll bench-hostile bench-fediverse bench-cadence clean

run: $(VENV)/.installed
	$(BIN)/feedpub check
	$(BIN)/feedpub build
	$(BIN)/feedpub digest preview --since 2025-01-01

test: $(VENV)/.installed
	$(BIN)/ruff check --output-format concise feedpub tests
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py

bench-send: $(VENV)/.installed
	$(BIN)/python bench/send_bench.py

bench-publish: $(VENV)/.installed
	$(BIN)/python bench/publish_bench.py

bench-admin: $(VENV)/.installed
	$(BIN)/python bench/admin_bench.py

bench-cadence: $(VENV)/.installed
	$(BIN)/python bench/cadence_bench.py

bench-bounces: $(VENV)/.installed
	$(BIN)/python bench/bounce_bench.py

bench-archive: $(VENV)/.installed
	$(BIN)/python bench/archive_bench.py

bench-hostile: $(VENV)/.installed
	$(BIN)/python bench/hostile_bench.py

bench-fediverse: $(VENV)/.installed
	$(BIN)/python bench/fediverse_bench.py

# CORPUS: a folder of returned mail with an expected.json (never part of the project)
bench-bounce-accuracy: $(VENV)/.installed
	$(BIN)/python bench/bounce_accuracy.py $(or $(CORPUS),$(error CORPUS=DIR is required))

# SITE: a folder with _posts/ (default: the parity fixture); JEKYLL_ARGS: --url, --timezone, --permalink
bench-jekyll: $(VENV)/.installed
	$(BIN)/python bench/jekyll_compare.py $(or $(SITE),tests/site/fixtures/jekyll_parity) $(JEKYLL_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check --output-format concise feedpub tests

# requirements.lock pins every package (and its hashes) that a fresh clone installs, the build backend and
# what it needs for an editable install (editables) included; `make lock` resolves pyproject.toml's ranges
# again with uv.
UV := uv==0.13.8

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

lock:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(UV)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], 'editables', sep='\n')" \
		| $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --extra test \
		--custom-compile-command "make lock" pyproject.toml - -o requirements.lock

clean:
	rm -rf $(VENV) public .feedpub bench/work
