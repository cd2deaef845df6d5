# OpenMonetize: `make up` runs the local stack, `make test` runs the test suite.
# Both do all set-up on a fresh machine (virtualenv, Kafka jars, Postgres binaries).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
OM     := $(VENV)/bin/openmonetize

.PHONY: help up down status env test chaos chaos-tests soak clean-test venv bench bench-ingest openapi docs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml setup.py schemas/_avro_native.c  # the C file: `make venv` rebuilds the extension
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[local,dev]'  # extras: pyproject.toml
	touch $@

venv: $(VENV)/.installed  ## create .venv and install the package (+ the `openmonetize` command)

up: venv  ## start the local stack (Kafka, Postgres, ClickHouse, API, worker) and wait until ready
	$(OM) stack up
	@$(OM) stack env
	@$(OM) stack env | sed -n 's|^API_URL=\(.*\)|dashboard: \1/dashboard (sign in with the key `$(OM) admin create-customer NAME` prints)|p'

down: venv  ## stop everything `make up` started (data is kept in .stack/)
	$(OM) stack down

status: venv  ## show the state of each service
	$(OM) stack status

env: venv  ## print KAFKA_BOOTSTRAP, DATABASE_URL, CLICKHOUSE_URL, API_URL
	@$(OM) stack env

test: venv  ## start a separate test stack, run pytest, stop the stack (PYTEST_ARGS=... to filter)
	deploy/run-tests.sh $(PYTEST_ARGS)

openapi: venv  ## regenerate docs/openapi.json from the app (the TypeScript SDK's types come from it)
	$(VENV)/bin/python -m api.openapi_spec --write

docs: openapi  ## regenerate docs/reference/ (HTTP API, CLI, settings, metrics, topics) from the code
	$(VENV)/bin/python -m deploy.docs_gen --write

chaos: venv  ## fault scenarios under load on a stack of their own; writes chaos-results.json (CHAOS_ARGS=...)
	deploy/run-chaos.sh $(CHAOS_ARGS)

chaos-tests: venv  ## the pytest fault tests alone (workers and sinks killed -9, rebalances, outages); `make test` runs all but the one marked chaos
	deploy/run-tests.sh -m "chaos or not chaos" tests/integration/test_pipeline_faults.py tests/integration/test_wallet_agent.py tests/integration/test_sink_faults.py $(PYTEST_ARGS)

DURATION ?= 30m
soak: venv  ## DURATION=30m of steady load, a random fault every 2 min, reconcile every minute, RSS over time, on a stack of its own; writes soak-results.json (SOAK_ARGS=...)
	deploy/run-soak.sh --duration $(DURATION) $(SOAK_ARGS)

clean-test:  ## stop the test stack and delete its data (.stack-test/)
	-OM_ENV_FILE=deploy/test.env STACK_DIR=.stack-test $(OM) stack down
	rm -rf .stack-test

bench: venv  ## every benchmark against the running stack (`make up` first) into bench-results.json; QUICK=1 short
	$(VENV)/bin/python -m deploy.bench.kafka_raw --records $(if $(QUICK),100000,500000) --runs 3
	$(MAKE) --no-print-directory bench-entitlements
	$(MAKE) --no-print-directory bench-sinks
	$(MAKE) --no-print-directory bench-reports
	$(MAKE) --no-print-directory bench-replay
	$(MAKE) --no-print-directory bench-proxy
	$(MAKE) --no-print-directory bench-pipeline PIPELINE_ARGS="$(if $(QUICK),--quick --events 20000 --duration 5,--events 1000000 --runs 1 --duration 30)" PIPELINE_WORKERS=1
	@# last: the events they put on usage.events go through the stack's own worker, which would slow the others
	$(MAKE) --no-print-directory bench-backlog
	$(MAKE) --no-print-directory bench-ingest
	$(VENV)/bin/python -m deploy.bench.summary

.PHONY: bench-pipeline
PIPELINE_WORKERS ?= $(if $(QUICK),1,1 2)
PIPELINE_ARGS ?= $(if $(QUICK),--quick)
bench-pipeline: venv  ## usage.events to the ledger with own workers on the running stack; QUICK=1 short
	$(VENV)/bin/python -m deploy.bench.pipeline $(PIPELINE_ARGS) --workers "$(PIPELINE_WORKERS)"

.PHONY: bench-backlog
bench-backlog: venv  ## 40,000 events put on usage.events by a plain confluent-kafka producer, timed into the stack's Postgres ledger
	$(VENV)/bin/python -m deploy.bench.backlog --events 40000 --runs 3

.PHONY: bench-reports
bench-reports: venv  ## every documented report over 10,000,000 generated rows (QUICK=1: 500,000) in ClickHouse
	$(VENV)/bin/python -m deploy.bench.reports --rows $(if $(QUICK),500000,10000000) --runs 3

.PHONY: bench-sinks
bench-sinks: venv  ## each sink draining a backlog into its own database on the running stack; QUICK=1 short
	$(VENV)/bin/python -m deploy.bench.sinks --records $(if $(QUICK),50000,300000) --runs $(if $(QUICK),1,3)

bench-ingest: venv  ## ingestion benchmarks against the running stack; results merged into bench-results.json
	$(VENV)/bin/python -m deploy.bench.producer --events $(if $(QUICK),100000,500000) --runs 3
	$(VENV)/bin/python -m deploy.bench.ingest_http --duration $(if $(QUICK),3,5) --runs $(if $(QUICK),1,3)

.PHONY: bench-entitlements
bench-entitlements: venv  ## entitlement check latency over HTTP keep-alive and balance staleness on the running stack; QUICK=1 short
	$(VENV)/bin/python -m deploy.bench.entitlements --duration $(if $(QUICK),3,5) --runs $(if $(QUICK),1,3)

.PHONY: bench-proxy
bench-proxy: venv  ## what the AI proxy adds to a call vs the same call direct (fake upstream, fixed latency) on the running stack
	$(VENV)/bin/python -m deploy.bench.proxy --duration $(if $(QUICK),3,5) --runs $(if $(QUICK),1,3)

.PHONY: bench-replay
bench-replay: venv  ## rebilling replay dry runs over 300,000 events (QUICK=1: 100,000) on the running stack
	$(VENV)/bin/python -m deploy.bench.replay $(if $(QUICK),--quick --runs 1,--events 300000 --runs 3)
