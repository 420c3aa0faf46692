# The two commands of the README: `make serve` and `make test`.
# Both create .venv and install sockway (editable) with its test tools on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: serve test lint install clean

$(BIN)/.sockway-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Real JavaScript clients (wscat, ...) that the tests drive; node_modules/ is git-ignored.
node_modules/.package-lock.json: package.json
	npm install --no-audit --no-fund --loglevel=error

install: $(BIN)/.sockway-installed node_modules/.package-lock.json

serve: install
	$(BIN)/sockway serve $(ARGS)

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .sockway .pytest_cache .mypy_cache .ruff_cache
