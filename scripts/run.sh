#!/usr/bin/env bash
# The demo, as `make run` starts it inside scripts/with-services.sh (which provides
# DATABASE_URL, REDIS_URL and PATH): migrate, seed the demo data, print where to sign in, then
# honcho runs web + worker + beat from the Procfile until Ctrl-C.
set -euo pipefail

CS_TAG=run
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ -n ${DATABASE_URL:-} && -n ${REDIS_URL:-} ]] ||
    cs_die "DATABASE_URL/REDIS_URL are not set: start the demo with 'make run'"
[[ -f manage.py ]] || cs_die "manage.py not found: the Django project is not in this checkout yet"

export DJANGO_DEBUG=${DJANGO_DEBUG:-1}
export PYTHONUNBUFFERED=1
port=${PORT:-8000}
if cs_port_open "$port"; then
    cs_die "127.0.0.1:$port is already in use (another make run?); try: make run PORT=8001"
fi
mkdir -p "$DEV_DIR"

cs_log "python manage.py migrate --noinput"
python manage.py migrate --noinput
cs_log "python manage.py seed_demo"
python manage.py seed_demo

cat <<BANNER

  ================================================================
    Countersign: http://127.0.0.1:${port}/

    Demo sign-ins, password: ${DEMO_PASSWORD:-demo}
      operator   reviewer   manager   auditor

    Ctrl-C stops web, worker and beat, and the services this run
    started. The data stays in .dev for the next make run.
  ================================================================

BANNER

# .env is already loaded (with the environment taking precedence); /dev/null keeps honcho from
# applying it again on top of the environment.
exec honcho start -f Procfile -e /dev/null -p "$port"
