#!/usr/bin/env bash
# `make chaos`: start the chaos stack (deploy/chaos.env: own ports and data dir), run the fault
# scenarios (python -m deploy.chaos), and stop the stack whatever happened. Arguments go to the
# runner (e.g. --scenarios worker_kill,postgres_down).
set -uo pipefail
cd "$(dirname "$0")/.."

unset KAFKA_BOOTSTRAP DATABASE_URL CLICKHOUSE_URL API_URL
export OM_ENV_FILE=deploy/chaos.env
set -a
. deploy/chaos.env
set +a

OM=.venv/bin/openmonetize
trap '$OM stack down >/dev/null 2>&1 || echo "warning: chaos stack did not stop cleanly" >&2' EXIT

$OM stack up || { echo "chaos stack did not start; logs in $STACK_DIR/logs" >&2; exit 1; }
.venv/bin/python -m deploy.chaos "$@"
