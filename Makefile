# PinGlass — `make run` starts the service, `make test` runs the tests; both create .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run scheduler test lint format bench chaos locales clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

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
	rm -rf $(VENV) .pytest_cache .ruff_cache
