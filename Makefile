# The two commands of the README: `make serve` and `make test`.
# Both create .venv on first use. `make serve` installs what serving needs: sockway (editable)
# and its dependencies. `make test` (and `make install`) add the test tools and the JavaScript
# clients the tests drive.
# Interpreters (issue 18). sockway supports CPython 3.11-3.13. The default one (.venv: `make
# serve`, lint, the first test run) is the newest supported CPython found, python3.X on PATH or
# under pyenv's versions; `make test` then runs the suite again on the oldest supported one
# (3.11, in .venv-3.11). PYTHON=/path/to/python overrides the default.
# $(call find_python,3.12): the path of a working python3.12, or nothing. A pyenv shim of a
# version that is not selected exists on PATH but fails, hence the probe.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
find_python = $(firstword $(foreach c,$(shell command -v python$(1) 2>/dev/null) \
  $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)),$(if $(shell $(c) -c \
  'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(1))))' 2>/dev/null \
  && echo ok),$(c))))
comma  := ,
OLDEST := 3.11
NEWEST := $(or $(call find_python,3.13),$(call find_python,3.12))
PYTHON ?= $(or $(NEWEST),python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
PY_VER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON_OLDEST ?= $(call find_python,$(OLDEST))
VENV_OLDEST   ?= .venv-$(OLDEST)
# A .venv made by another interpreter (one made before the default moved on) is rebuilt.
VENV_VER := $(shell sed -n 's/^version *= *\([0-9]*\.[0-9]*\).*/\1/p' $(VENV)/pyvenv.cfg 2>/dev/null)
VENV_CLEAR := $(if $(and $(VENV_VER),$(filter-out $(PY_VER),$(VENV_VER))),--clear)
# The second run of `make test`: only when the default is not already the oldest.
SECOND := $(if $(filter-out $(OLDEST),$(PY_VER)),$(if $(PYTHON_OLDEST),$(VENV_OLDEST)))

.PHONY: serve test lint install browser clean bench bench-quick bench-instructions autobahn FORCE

$(BIN)/.sockway-installed: pyproject.toml $(if $(VENV_CLEAR),FORCE)
	$(PYTHON) -m venv $(VENV_CLEAR) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.sockway-dev-installed: $(BIN)/.sockway-installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Real JavaScript clients (wscat, ...) that the tests drive; node_modules/ is git-ignored.
node_modules/.package-lock.json: package.json
	npm install --no-audit --no-fund --loglevel=error

# Debian's chromium for the browser tests (tests/e2e/browser_support.py): never a downloaded
# browser. Installed with apt-get when missing and we may (root); otherwise say how, loudly.
CHROMIUM ?= $(or $(SOCKWAY_CHROMIUM),/usr/bin/chromium)
browser:
	@if [ -x "$(CHROMIUM)" ] || command -v "$(CHROMIUM)" >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests (apt-get, ~1-2 min once)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; \
	else echo "*** WARNING: no chromium at $(CHROMIUM) and no root to apt-get it: the browser" \
	  "tests will fail. Run 'sudo apt-get install -y chromium' or set SOCKWAY_CHROMIUM." >&2; fi

install: $(BIN)/.sockway-dev-installed node_modules/.package-lock.json browser

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

# The test tools of the oldest supported interpreter (its own venv, next to .venv).
$(VENV_OLDEST)/bin/.sockway-installed: pyproject.toml
	$(PYTHON_OLDEST) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_OLDEST)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

# Lint and types once; the suite on the default interpreter, then on the oldest supported one.
# Both runs happen even if the first fails; the exit status says whether either failed.
test: lint autobahn $(if $(SECOND),$(SECOND)/bin/.sockway-installed)
	@$(MATRIX_WARNING)
	@echo "=== tests on Python $(PY_VER) ($(PYTHON))"
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=1; \
	$(if $(SECOND),echo "=== tests on Python $(OLDEST) ($(PYTHON_OLDEST))"; \
	  $(SECOND)/bin/pytest $(PYTEST_ARGS) || status=1;) \
	$(MATRIX_WARNING); exit $$status

# Said before and after the runs, so that it is not lost in the output.
MATRIX_WARNING = $(if $(NEWEST),true,echo "*** WARNING: no Python 3.12 or 3.13 found (PATH," \
  "$(PYENV_ROOT)/versions): the suite ran on $(PY_VER) only, not on what users run today." >&2); \
  $(if $(SECOND)$(filter $(OLDEST),$(PY_VER)),true,echo "*** WARNING: no Python $(OLDEST)" \
  "found: the oldest supported interpreter is not tested." >&2)

# Benchmarks (issue 7): the gateway against raw picows / Node ws / websockets / aiohttp servers
# in the same run, pinned to one core each side. Full: 8-12 min (under 15 busy) -> bench/RESULTS.md;
# QUICK=1 (or bench-quick): one short smoke run, ~2.5 min -> bench/results/RESULTS-quick.md.
bench: install
	$(BIN)/python bench/run.py $(if $(QUICK),--quick) $(ARGS)

bench-quick:
	$(MAKE) bench QUICK=1

# Instruction counts of the server under valgrind's callgrind (issue 18): fixed workloads, the
# measured phase only, sockway and raw picows in one run, on the default interpreter and on the
# oldest supported one (~7-9 min each, of which ~2 the `runtime: process` row, workers counted
# too) -> bench/INSTRUCTIONS.md (appended to bench/RESULTS.md).
bench-instructions: install $(if $(SECOND),$(SECOND)/bin/.sockway-installed)
	$(BIN)/python bench/instructions.py $(ARGS)
	$(if $(SECOND),$(SECOND)/bin/python bench/instructions.py $(ARGS))

clean:
	rm -rf $(VENV) $(VENV_OLDEST) .sockway .pytest_cache .mypy_cache .ruff_cache .autobahn
