#!/usr/bin/env bash
# `make test`: install what is missing, start the services, run pytest with the arguments given
# (make test PYTEST_ARGS='-k foo'), stop what this run started; pytest's exit code is kept.
# Tests use the dev Postgres (pytest-django creates and drops its own test_countersign) and Redis
# database 1, so a `make run` on database 0 is not disturbed.
set -euo pipefail

CS_TAG="test"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export PYTHONUNBUFFERED=1
rc=0
bash "$REPO_ROOT/scripts/with-services.sh" --deps --redis-db 1 --name test -- \
    "$VENV_DIR/bin/pytest" "$@" || rc=$?
case $rc in
0) ;;
5) cs_log "pytest collected no tests (exit 5): that counts as a failure" ;;
*) cs_log "pytest exited with $rc" ;;
esac
exit "$rc"
