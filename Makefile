# The two commands a newcomer runs are `make demo` and `make test`; everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# Every installable package of the repository, installed editable into the project venv.
PACKAGES := core sandbox contactsync-singer tap-pipeliner-contacts target-pipeliner-contacts \
            tap-outlook-contacts target-outlook-contacts contactsync-mapper

.PHONY: install test lint unit sandbox demo plugins constraints clean orchestrator orchestrator-constraints dist dist-check

install: $(STAMP)

$(STAMP): Makefile constraints.txt requirements-dev.txt $(PACKAGES:%=%/pyproject.toml)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "contactsync needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -r requirements-dev.txt $(PACKAGES:%=-e ./%)
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## make test: ruff, then the whole suite (unit, contract, property, sandbox, plugins, meltano run),
## on TEST_WORKERS processes (pytest-xdist; each worker starts its own sandbox on free ports; an idle
## worker takes tests queued on a busy one, and tests/conftest.py hands out the longest first).
TEST_WORKERS ?= 2
test: lint plugins orchestrator dist-check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

## make dist: wheels of every package into dist/ (uv build; a plugin installs from there alone,
## e.g. pip_url: --find-links /path/to/dist tap-pipeliner-contacts).
dist: install
	rm -rf dist
	for p in $(PACKAGES); do $(BIN)/uv build -q --wheel --out-dir dist $$p || exit 1; done
	rm -rf $(PACKAGES:%=%/build)

## make dist-check: each plugin installed from dist/ into a fresh virtualenv outside the repo
## runs its --about (part of make test).
dist-check: dist
	$(BIN)/python scripts/check_dist.py

## make sandbox: run the local emulators in the foreground (Ctrl-C stops them).
sandbox: install
	$(BIN)/contactsync-sandbox serve

## make plugins: install the Meltano plugins of meltano.yml into .meltano/ (uv virtualenvs), then
## compile their bytecode: uv does not, and where PYTHONDONTWRITEBYTECODE is set (CI images, this
## machine) every plugin process would compile singer-sdk and SQLAlchemy again at each start,
## about 0.5-1 CPU second per process, six processes per two-way run (issue #15).
MELTANO_STAMP := .meltano/.installed
plugins: $(MELTANO_STAMP)
$(MELTANO_STAMP): $(STAMP) meltano.yml
	MELTANO_SEND_ANONYMOUS_USAGE_STATS=false $(BIN)/meltano install
	$(BIN)/python -m compileall -q -j 0 .meltano/*/*/venv/lib $(PACKAGES:%=%/src) > /dev/null
	@touch $@

## make demo: the two-way sync on the sandbox through `meltano run`, twice, and what it did.
demo: plugins
	$(BIN)/python scripts/demo.py

## make orchestrator: the Dagster deployment's own virtualenv, orchestrator/.venv (Dagster and
## Meltano upgrade independently; it calls the project's `contactsync`). See docs/orchestrator.md.
ORCH_VENV  := orchestrator/.venv
ORCH_STAMP := $(ORCH_VENV)/.installed
orchestrator: $(ORCH_STAMP)
$(ORCH_STAMP): orchestrator/pyproject.toml orchestrator/constraints.txt
	@test -x $(ORCH_VENV)/bin/python || $(PYTHON) -m venv $(ORCH_VENV)
	$(ORCH_VENV)/bin/python -m pip --disable-pip-version-check -q install \
	  -c orchestrator/constraints.txt -e ./orchestrator
	@touch $@

orchestrator-constraints:
	$(ORCH_VENV)/bin/python -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools)==' \
	  | sed '1i # Exact versions for the orchestrator virtualenv (make orchestrator). Regenerate with: make orchestrator-constraints' \
	  > orchestrator/constraints.txt

constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools)==' \
	  | sed '1i # Exact versions for the project virtualenv (make install). Regenerate with: make constraints' > constraints.txt

clean:
	rm -rf $(VENV) $(ORCH_VENV) .pytest_cache .ruff_cache .hypothesis dist

## make bench: issue #6's benchmarks through `meltano run` on the sandbox (not part of make test;
## about 10-15 minutes at the default sizes on 2 cores). Writes docs/benchmarks.{json,md,png}.
## Quick run: make bench BENCH_SIZES=1000,10000
.PHONY: bench
BENCH_SIZES ?= 1000,10000,50000
BENCH_STAMP := $(VENV)/.bench-installed
bench: plugins $(BENCH_STAMP)
	$(BIN)/python -m bench.run --sizes $(BENCH_SIZES)
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PIP) install -c constraints.txt -r requirements-bench.txt
	@touch $@
