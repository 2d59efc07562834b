#!/usr/bin/env bash
# Run a command with Postgres and Redis up and DATABASE_URL / REDIS_URL exported, then stop
# whatever services this run started (and only those), however the command ends.
#
#   scripts/with-services.sh [--deps] [--redis-db N] [--name NAME] -- COMMAND [ARGS...]
#
#   --deps        first install what is missing (scripts/services.sh deps)
#   --redis-db N  the Redis database index for REDIS_URL (default 0; tests use 1)
#   --name NAME   a label for the session (default cmd); the session is NAME-<pid>
#
# The command runs from the repo root with .venv/bin first on PATH and .env loaded (the
# environment wins over .env). Its exit code is this script's exit code.
set -euo pipefail

CS_TAG=with-services
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

deps=0
redis_db=0
name=cmd
while (($#)); do
    case $1 in
    --deps)
        deps=1
        shift
        ;;
    --redis-db)
        redis_db=${2:?--redis-db needs a number}
        shift 2
        ;;
    --name)
        name=${2:?--name needs a value}
        shift 2
        ;;
    --)
        shift
        break
        ;;
    *) cs_die "unknown option: $1 (usage: with-services.sh [--deps] [--redis-db N] [--name NAME] -- COMMAND...)" ;;
    esac
done
(($#)) || cs_die "no command given (usage: with-services.sh [options] -- COMMAND...)"

cs_load_dotenv
services=$REPO_ROOT/scripts/services.sh
session="$name-$$"

if ((deps)); then
    bash "$services" deps
fi

# shellcheck disable=SC2317  # (reached through the EXIT trap)
cleanup() {
    local rc=$?
    # Ignored signals stay ignored in children: a second Ctrl-C cannot cut the shutdown short.
    trap '' INT TERM HUP
    bash "$services" stop --session "$session" || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

bash "$services" start --session "$session" --owner-pid "$$"
env_lines=$(bash "$services" env --redis-db "$redis_db")
eval "$env_lines"
export PATH="$VENV_DIR/bin:$PATH" VIRTUAL_ENV="$VENV_DIR"
cd "$REPO_ROOT"

# From here on Ctrl-C is the command's business (pytest prints its summary, honcho stops its
# processes, a Django shell clears its line); this script waits for it and then cleans up.
trap ':' INT
set +e
"$@"
rc=$?
set -e
exit "$rc"
