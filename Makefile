# The two commands of the README: `make serve` and `make test`.
# Both create .venv on first use. `make serve` installs what serving needs: sockway (editable)
# and its dependencies. `make test` (and `make install`) add the test tools and the JavaScript
# clients the tests drive.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: serve test lint install clean bench bench-quick autobahn

$(BIN)/.sockway-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.sockway-dev-installed: $(BIN)/.sockway-installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Real JavaScript clients (wscat, ...) that the tests drive; node_modules/ is git-ignored.
node_modules/.package-lock.json: package.json
	npm install --no-audit --no-fund --loglevel=error

install: $(BIN)/.sockway-dev-installed node_modules/.package-lock.json

# The Autobahn testsuite (tests/e2e/test_autobahn.py) is Python 2 code: installed with the
# machine's pyenv Python 2.7 into .autobahn/ (git-ignored), ~50 s once.
AUTOBAHN_STAMP = .autobahn/.installed-25.10.1
$(AUTOBAHN_STAMP): $(BIN)/.sockway-installed tests/e2e/autobahn_support.py
	$(BIN)/python -m tests.e2e.autobahn_support install
	touch $@

autobahn: $(AUTOBAHN_STAMP)

serve: $(BIN)/.sockway-installed
	$(BIN)/sockway serve $(ARGS)

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

test: lint autobahn
	$(BIN)/pytest

# Benchmarks (issue 7): the gateway against raw picows / Node ws / websockets / aiohttp servers
# in the same run, pinned to one core each side. Full: 12-15 min -> bench/RESULTS.md;
# QUICK=1 (or bench-quick): one short smoke run, ~2.5 min -> bench/results/RESULTS-quick.md.
bench: install
	$(BIN)/python bench/run.py $(if $(QUICK),--quick) $(ARGS)

bench-quick:
	$(MAKE) bench QUICK=1

clean:
	rm -rf $(VENV) .sockway .pytest_cache .mypy_cache .ruff_cache .autobahn
