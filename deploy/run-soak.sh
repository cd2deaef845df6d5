#!/usr/bin/env bash
# `make soak`: start the soak stack (deploy/soak.env: own ports and data dir) from empty data,
# run the soak (python -m deploy.chaos.soak), and stop the stack whatever happened. Arguments go
# to the soak (e.g. --duration 30m --seed 7). The data is wiped before, not after, so the last
# run's logs stay in .stack-soak/logs for reading.
set -uo pipefail
cd "$(dirname "$0")/.."

unset KAFKA_BOOTSTRAP DATABASE_URL CLICKHOUSE_URL API_URL
export OM_ENV_FILE=deploy/soak.env
set -a
. deploy/soak.env
set +a

OM=.venv/bin/openmonetize
# A soak's figures (memory, reconcile times) depend on the data already there: start from none.
$OM stack down >/dev/null 2>&1
case "$STACK_DIR" in
  .stack-soak*) rm -rf -- "$STACK_DIR" ;;
  *) echo "refusing to wipe STACK_DIR=$STACK_DIR (not a .stack-soak dir)" >&2; exit 1 ;;
esac
trap '$OM stack down >/dev/null 2>&1 || echo "warning: soak stack did not stop cleanly" >&2' EXIT

$OM stack up || { echo "soak stack did not start; logs in $STACK_DIR/logs" >&2; exit 1; }
.venv/bin/python -m deploy.chaos.soak "$@"
