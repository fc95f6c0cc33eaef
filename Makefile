# PinGlass — `make run` starts the service, `make test` runs the tests; both create .venv if needed
# and install exactly what uv.lock pins (nothing is resolved at install time).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
# uv never downloads an interpreter: it uses the .venv that make creates with the Python below.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# The supported version is stated once, in .python-version (pyproject.toml's requires-python is its
# range). Use that version when it is installed; otherwise python3, and say which one that is.
PYTHON_WANTED := $(shell cat .python-version)
PYTHON ?= $(shell for p in python$(PYTHON_WANTED) python3; do $$p -c '' >/dev/null 2>&1 && { command -v $$p; break; }; done)

.PHONY: run scheduler test durations mutate lint format lock lock-check bench chaos locales clean python

python:
	@test -n "$(PYTHON)" || { echo "make: no python3 found; install Python $(PYTHON_WANTED) (see .python-version)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); PinGlass needs 3.11+ ($(PYTHON_WANTED) preferred, see .python-version)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != "$(PYTHON_WANTED)")' || echo "make: Python $(PYTHON_WANTED) (.python-version) not found; using $(PYTHON), Python $$($(PYTHON) -c 'import platform; print(platform.python_version())')"

$(BIN)/python: | python
	$(PYTHON) -m venv $(VENV)

# uv is the one tool installed before the lock, itself pinned by hash.
$(UV): .ci/uv-requirements.txt | python
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --require-hashes --target $(TOOLS)/uv -r .ci/uv-requirements.txt
	touch $(UV)

# Bytecode is compiled at install, as pip does by default (uv does not): otherwise every process the
# tests start compiles aiogram, SQLAlchemy, pydantic and the rest again where PYTHONDONTWRITEBYTECODE is
# set, or all at once at the start where it is not (120 of a fresh clone's 677 CPU seconds of tests).
$(STAMP): pyproject.toml uv.lock $(UV) | $(BIN)/python
	$(UV) sync --locked --extra dev --compile-bytecode --python $(BIN)/python --quiet
	touch $(STAMP)

# Without a token, say what to set and where in one line (the process says the same when run directly).
TOKEN_HINT := BOT_TOKEN is not set: put your bot token from @BotFather into the environment or .env (see .env.example)
HAS_TOKEN = $(or $(BOT_TOKEN),$(shell grep -s -E '^BOT_TOKEN=.+' .env))

run: $(STAMP)
	$(if $(HAS_TOKEN),,$(error $(TOKEN_HINT)))
	$(BIN)/python -m bot

scheduler: $(STAMP)
	$(if $(HAS_TOKEN),,$(error $(TOKEN_HINT)))
	$(BIN)/python -m scheduler

# Six workers on two cores: many tests wait on fake servers, sleeps and child processes, not the CPU.
# Worksteal gives each worker a slice of the collection; tests/slowest_first.py orders it so the slices
# hold equal measured work with the long tests first (tests/durations.json, `make durations`).
# First our code is compiled and the test modules collected once (two halves at once, output dropped:
# the run itself reports any error), which leaves pytest's assert-rewritten modules cached; bytecode is
# written even where PYTHONDONTWRITEBYTECODE is set. Otherwise six workers rewrite and compile the same
# modules at once: on a fresh clone that cost 125 CPU seconds and 70 s of the run (360 s instead of 291).
PYTEST_ARGS ?= -n 6 --dist worksteal
COLLECT := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -p no:xdist -p no:cacheprovider --collect-only -q
test: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 bot scheduler providers storage studio migrations bench tests
	$(COLLECT) tests/unit >/dev/null 2>&1 & $(COLLECT) tests/integration >/dev/null 2>&1; wait
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_ARGS)

# Measure every test's seconds into tests/durations.json (the order `make test` runs them in).
durations: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_ARGS) -q --record-durations tests/durations.json

# Mutation testing (not part of `make test`; minutes on a quiet machine, half an hour under heavy load, see
# README): mutmut changes the money, claim, transition, policy, delivery-batching and work-queue rules one
# mutant at a time ([tool.mutmut] in pyproject.toml names the modules and their unit tests) and prints
# killed/total per module and every mutant no test killed; tests/mutation_survivors.md says why each one
# left is harmless.
# mutmut, not cosmic-ray: mutmut forks each mutant from one process that has already imported pytest,
# the code and the tests, and runs only the tests that executed the mutated function (it records them
# in a first, clean run), so 1,300 mutants take minutes on two cores. cosmic-ray starts the test
# command afresh for every mutant (a pytest start-up that imports SQLAlchemy and the fixtures costs
# seconds) and its local runner takes one mutant at a time. Every run starts from a fresh mutants/.
# With TEST_DATABASE_URL set, the ledger's tests run on PostgreSQL as well (they kill the row-lock mutants).
MUTATE_JOBS ?= 2
mutate: $(STAMP)
	rm -rf mutants && mkdir mutants
	@start=$$(date +%s); \
	$(BIN)/mutmut run --max-children $(MUTATE_JOBS) > mutants/run.log 2>&1 || { tail -n 40 mutants/run.log; exit 1; }; \
	echo "mutmut ran $$(( $$(date +%s) - start )) s with $(MUTATE_JOBS) workers (log: mutants/run.log)"
	$(BIN)/python tests/mutation_score.py --min 90

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Refresh uv.lock from pyproject.toml (LOCK_ARGS="--upgrade-package NAME" bumps one dependency).
lock: $(UV)
	$(UV) lock $(LOCK_ARGS)

# One line when pyproject.toml and uv.lock disagree (CI runs this before anything else).
lock-check: $(UV)
	@$(UV) lock --check --quiet 2>/dev/null || { echo "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock"; exit 1; }

# The load runner (app as a subprocess against the fakes); `python -m bench` still runs the micro-benchmarks.
BENCH_ARGS ?= --packs 10 --mode both --steps 10,100,300,1000
bench: $(STAMP)
	$(BIN)/python -m bench.load $(BENCH_ARGS)

# Chaos scenarios with invariant checks; PostgreSQL (scenario 5) from TEST_DATABASE_URL when set.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

locales: $(STAMP)
	$(BIN)/python -m bot.locales.compile

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache mutants
