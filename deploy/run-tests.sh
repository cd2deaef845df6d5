#!/usr/bin/env bash
# `make test`: start the test stack (deploy/test.env: own ports and data dir), run pytest,
# and stop the stack again whatever happened. Arguments go to pytest.
# TEST_ENV_FILE names another env file (other ports, another STACK_DIR) to run a second test
# stack beside the first, e.g. two developers' checkouts on one machine.
set -uo pipefail
cd "$(dirname "$0")/.."

# Derive every URL from the test ports, whatever the caller's shell or .env says.
unset KAFKA_BOOTSTRAP DATABASE_URL CLICKHOUSE_URL API_URL
export OM_ENV_FILE=${TEST_ENV_FILE:-deploy/test.env}
set -a
. "$OM_ENV_FILE"
set +a

# OM_TEST_BACKEND: `local` (default) the project's own stack; `containers` Kafka, Postgres and
# ClickHouse in Docker containers (deploy/containers_stack.py; needs a Docker engine).
case "${OM_TEST_BACKEND:-local}" in
  local) ;;
  containers) exec .venv/bin/python -m deploy.containers_stack "$@" ;;
  *) echo "error: OM_TEST_BACKEND=$OM_TEST_BACKEND: use local (the default) or containers" >&2; exit 2 ;;
esac

OM=.venv/bin/openmonetize
trap '$OM stack down >/dev/null 2>&1 || echo "warning: test stack did not stop cleanly" >&2' EXIT

$OM stack up || { echo "test stack did not start; logs in $STACK_DIR/logs" >&2; exit 1; }
# The dashboard's browser test drives Debian's chromium: apt-get installs it when missing.
.venv/bin/python -m deploy.local_stack.browser || echo "warning: chromium is missing; the dashboard browser test will fail" >&2
.venv/bin/pytest -p no:cacheprovider "$@"
