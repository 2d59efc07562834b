#!/usr/bin/env bash
# `make faults`: the fault-injection suite (tests/faults) against a Postgres and a Redis of its
# own, because it SIGKILLs workers and restarts both services under the runs; a restart must
# never reach `make test`'s services or a `make run` on the same machine.
#
#   scripts/faults.sh [PYTEST_ARGS...]
#
# Services: .dev/faults (COUNTERSIGN_DEV_DIR) on 127.0.0.1, Postgres on COUNTERSIGN_PG_PORT + 1000
# and Redis on COUNTERSIGN_REDIS_PORT + 1000 (or COUNTERSIGN_FAULTS_PG_PORT /
# COUNTERSIGN_FAULTS_REDIS_PORT), with synchronous_commit ON: a crash of Postgres must not lose a
# commit the engine already acted on. They are stopped again when the suite ends.
# The summary table of every scenario is printed and written to test-artifacts/faults/.
set -euo pipefail

CS_TAG=faults
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cs_load_dotenv

# A DATABASE_URL or REDIS_URL from the environment or .env would point the suite at services it
# must not restart: the suite always uses its own.
unset DATABASE_URL REDIS_URL CELERY_BROKER_URL ANTHROPIC_BASE_URL
export COUNTERSIGN_PG_PORT=${COUNTERSIGN_FAULTS_PG_PORT:-$((${COUNTERSIGN_PG_PORT:-54329} + 1000))}
export COUNTERSIGN_REDIS_PORT=${COUNTERSIGN_FAULTS_REDIS_PORT:-$((${COUNTERSIGN_REDIS_PORT:-63790} + 1000))}
export COUNTERSIGN_DEV_DIR=$REPO_ROOT/.dev/faults
export COUNTERSIGN_PG_SYNCHRONOUS_COMMIT=on
# tests/conftest.py collects tests/faults only when this is set.
export COUNTERSIGN_FAULTS=1
export PYTHONUNBUFFERED=1
# cs_load_dotenv in with-services.sh must not bring them back from .env.
export CS_DOTENV=/dev/null

cs_log "fault suite: Postgres 127.0.0.1:$COUNTERSIGN_PG_PORT, Redis 127.0.0.1:$COUNTERSIGN_REDIS_PORT, files in $COUNTERSIGN_DEV_DIR"
# The whole suite, unless the arguments name test files (make faults PYTEST_ARGS='tests/faults/x.py').
target=(tests/faults)
for arg in "$@"; do
    [[ $arg == tests/faults* ]] && target=()
done
rc=0
bash "$REPO_ROOT/scripts/with-services.sh" --deps --redis-db 1 --name faults -- \
    "$VENV_DIR/bin/pytest" "${target[@]}" -p no:cacheprovider "$@" || rc=$?
case $rc in
0) ;;
5) cs_log "pytest collected no fault tests (exit 5): that counts as a failure" ;;
*) cs_log "the fault suite failed (pytest exited with $rc)" ;;
esac
exit "$rc"
