# The two commands of the README:
#   make run    set up (venv, dependencies, migrations, demo data once) and
#               start the chat at http://127.0.0.1:8000
#   make test   set up and run the whole test suite, lint and the client's
#               unit tests included
# Everything else is a step of those two, or is described where it is defined
# (screenshots, bench, soak), and:
#   make fuzz   at least 10,000 random client frames and every form through
#               the fuzzer (tests/test_fuzz.py; make test runs at least 2,000,
#               the same ones every time)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test test-js lint setup setup-dev clean bench soak fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstalled whenever a requirements file changes.
$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

run: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "Chat at http://$(HOST):$(PORT)/ (Ctrl-C stops it)"
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The browser client's unit tests (tests/js/, docs/client.md): Node's own
# test runner, no npm packages to install. Without Node 18+ they are skipped
# with a message, except under CI=true, where that fails (.ci/run installs
# Debian's nodejs).
NODE ?= node
test-js:
	@if $(NODE) -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' 2>/dev/null; then \
		$(NODE) --test --test-reporter=spec tests/js/*.test.js; \
	elif [ "$$CI" = "true" ]; then \
		echo "CI=true and no Node.js 18+ to run the client's unit tests (Debian: apt-get install nodejs)" >&2; \
		exit 1; \
	else \
		echo "SKIPPED the client's unit tests (tests/js/): no Node.js 18+ (Debian: apt-get install nodejs)"; \
	fi

test: lint test-js
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache

# The README's screenshots (docs/screenshots/*.png), taken by Chromium from a
# seeded team: tests/e2e/screenshots.py, a file `make test` never collects,
# so that only this target rewrites them. Needs Chromium, as the browser
# tests do (Debian: apt-get install chromium).
.PHONY: screenshots
screenshots: setup-dev
	$(BIN)/python -m pytest tests/e2e/screenshots.py $(PYTEST_ARGS)

# The performance comparison (docs/performance.md): ours under daphne and
# uvicorn against the Channels tutorial and a bare relay, on PostgreSQL +
# Redis and on the embedded default, ramp steps of 8 s judged by the rule of
# bench/rule.py. About 30 minutes; stops by itself (50 minutes at most).
# Only the full run rewrites docs/performance.md; every table there names the
# one command that measures it again, e.g.
#   make bench BENCH_ARGS='--only ramp --servers ours-uvicorn --configs prod'
#   make bench BENCH_ARGS=--quick            a smoke run (its figures do not count)
#   .venv/bin/python bench/run.py --render bench/results/bench-<time>.json
$(VENV)/.installed-bench: bench/requirements.txt $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: setup-dev $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The soak (docs/soak.md): 1,000 signed-in sockets on one uvicorn process with
# PostgreSQL + Redis, steady chat for 10 minutes, a Redis restart and a
# database cut in the middle; memory, loss, duplicates, time to heal. Not in
# CI. Stops by itself within 13 minutes.
#   make soak SOAK_ARGS=--quick              200 sockets, 2 minutes
soak: setup-dev $(VENV)/.installed-bench
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# The fuzzer of client frames and forms (tests/test_fuzz.py) at scale: random
# examples (make test runs the same 2,000-odd frames every time), at least
# FUZZ_FRAMES of them; a failing example is kept under the system's temp
# directory and tried first next time. Prints how many frames it sent.
#   make fuzz FUZZ_FRAMES=50000
FUZZ_FRAMES ?= 10000
fuzz: setup-dev
	FUZZ_FRAMES=$(FUZZ_FRAMES) FUZZ_RANDOM=1 $(BIN)/python -m pytest tests/test_fuzz.py -p no:cacheprovider $(PYTEST_ARGS)
