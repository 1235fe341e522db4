# prescore: `make demo` runs the whole flow through Airflow; `make test` runs every test.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SIZE   ?= small
export PRESCORE_HMAC_KEY ?= demo-only-secret-change-me

.PHONY: setup check-java demo test lint bench clean

setup: check-java $(STAMP) $(VENV)/.delta-jars

# Spark 4 needs Java 17 or 21: one clear line otherwise, before anything is installed.
check-java:
	@scripts/check_java.sh

$(STAMP): pyproject.toml constraints.txt | check-java
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

# Delta's jars (and the use cases' JDBC drivers) resolve once, here, into a local jar store that
# every task and session then loads from (prescore.platform.jars): no Ivy resolution at run time.
$(VENV)/.delta-jars: $(STAMP) $(wildcard conf/*.yaml conf/env/*.yaml conf/usecases/*.yaml) \
		src/prescore/platform/ConditionalPutLogStore.java src/prescore/platform/jars.py \
		src/prescore/platform/cds.py
	@scripts/fetch_delta_jars.sh $(BIN)/python
	@touch $@

demo: setup
	@scripts/demo.sh

# Two pytest workers, one per core: both stay busy through the run, and a third only adds
# contention (bench/README.md, make test). --dist loadfile keeps each file on one worker, so its
# module fixtures (an Airflow deployment, a forecast run) are built once; the session-wide `flow`
# is built by one worker for both (tests/conftest.py).
# (Not loadgroup: pytest-xdist 3.8 cannot regroup tests under pytest 9.2, whose node ids it no
# longer rewrites.) --no-loadscope-reorder: files are handed out in collection order, which
# tests/conftest.py starts with the end-to-end files (the longest chains) and then the slow ones;
# xdist's default order (most tests first) left the Airflow runs for last.
test: setup
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

lint: setup
	$(BIN)/ruff check src jobs dags tests bench
	$(BIN)/ruff format --check src jobs dags tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports  # the package's layers: pyproject.toml [tool.importlinter]

bench: setup
	$(BIN)/python -m bench --size $(SIZE)

clean:
	rm -rf .state bench/.data spark-warehouse metastore_db derby.log
