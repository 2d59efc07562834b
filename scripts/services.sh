#!/usr/bin/env bash
# Countersign's private development services and machine dependencies.
#
#   scripts/services.sh deps [--system | --venv]   install what is missing (apt packages, .venv)
#   scripts/services.sh start [--session NAME] [--owner-pid PID]
#                                                  start (or reuse) Postgres 15 and Redis
#   scripts/services.sh stop [--session NAME | --all]
#                                                  stop what that session's start started
#   scripts/services.sh env [--redis-db N]         print `export DATABASE_URL=... REDIS_URL=... DJANGO_DEBUG=1`
#   scripts/services.sh status                     what runs, where its files and logs are
#   scripts/services.sh clean [--force]            stop --all, then delete .dev (asks first)
#
# Postgres: a private cluster in .dev/postgres on 127.0.0.1:54329 (COUNTERSIGN_PG_PORT),
#   superuser `postgres`, trust auth for loopback only, socket dir inside .dev, log in
#   .dev/log/postgres.log, database `countersign`. Skipped when DATABASE_URL is set (to anything
#   but this cluster's own URL).
# Redis: 127.0.0.1:63790 (COUNTERSIGN_REDIS_PORT), daemonized, appendonly, files in .dev/redis.
#   Skipped when REDIS_URL is set (to anything but this server's own URL).
#
# Sessions: each `start --session NAME` records in .dev/sessions/NAME which services it really
# started (an instance that was already running is reused, not recorded). `stop --session NAME`
# stops only those, and hands them over instead when another live session (its owner pid still
# runs) is using them. Without --session, start/stop use the session `manual` (e.g.
# `make services`), which counts as live until `stop` or `stop --all`.
set -euo pipefail

CS_TAG=services
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cs_load_dotenv

PG_PORT=${COUNTERSIGN_PG_PORT:-54329}
REDIS_PORT=${COUNTERSIGN_REDIS_PORT:-63790}
PG_DB=countersign
PG_URL_PRIVATE="postgres://postgres@127.0.0.1:${PG_PORT}/${PG_DB}"
WAIT_SECONDS=${COUNTERSIGN_WAIT_SECONDS:-60}
PG_SYNCHRONOUS_COMMIT=${COUNTERSIGN_PG_SYNCHRONOUS_COMMIT:-off}
[[ $PG_SYNCHRONOUS_COMMIT =~ ^(on|off)$ ]] ||
    cs_die "COUNTERSIGN_PG_SYNCHRONOUS_COMMIT must be on or off, not '$PG_SYNCHRONOUS_COMMIT'"
REDIS_DIR=$DEV_DIR/redis
SESSIONS_DIR=$DEV_DIR/sessions
STAMP=$VENV_DIR/.countersign-installed

log() { cs_log "$@"; }
die() { cs_die "$@"; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { ((EUID == 0)); }

# Root runs a command as root; anyone else goes through sudo (or is told what to run).
as_root() {
    if is_root; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root for: $*  (no sudo here: run it as root, then re-run this)"
    fi
}

# Postgres refuses to run as root: as root, run its tools as the `postgres` OS user, from /
# (its cwd may be a directory that user cannot enter). Otherwise, as the current user.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# The Postgres server binaries: $PG_BIN, else version 15 (Debian 12's), else the newest one.
find_pg_bin() {
    local dir
    local -a dirs=()
    if [[ -n ${PG_BIN:-} ]]; then
        printf '%s\n' "$PG_BIN"
        return 0
    fi
    mapfile -t dirs < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    for dir in /usr/lib/postgresql/15/bin "${dirs[@]}"; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres && -x $dir/pg_isready && -x $dir/psql ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

pg_bin() {
    [[ -n ${PGB:-} ]] && return 0
    PGB=$(find_pg_bin) || die "Postgres server binaries not found (run: scripts/services.sh deps)"
}

# --------------------------------------------------------------------------------------- deps

deps_system() {
    local -a missing=()
    find_pg_bin >/dev/null || missing+=(postgresql postgresql-client)
    have redis-server || missing+=(redis-server)
    have redis-cli || missing+=(redis-tools)
    have chromium || missing+=(chromium)
    # Screenshots need real fonts; chromium only recommends them.
    pkg_installed fonts-liberation || missing+=(fonts-liberation)
    pkg_installed fonts-dejavu-core || missing+=(fonts-dejavu-core)
    if ! have flock || ! have runuser || ! have namei; then
        missing+=(util-linux)
    fi
    have sha256sum || missing+=(coreutils)
    if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if ((${#missing[@]} == 0)); then
        log "system packages: nothing missing"
        return 0
    fi
    log "installing missing system packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
    find_pg_bin >/dev/null || die "Postgres server binaries still missing after apt-get install"
}

deps_venv() {
    local py=${PYTHON:-python3}
    have "$py" || die "$py not found (set PYTHON=/path/to/python3.11+)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$py is $("$py" -V 2>&1); Countersign needs Python >= 3.11 (set PYTHON=...)"
    if [[ ! -x $VENV_DIR/bin/python ]] || ! "$VENV_DIR/bin/python" -c '' >/dev/null 2>&1; then
        log "creating $VENV_DIR with $("$py" -V 2>&1)"
        "$py" -m venv --clear "$VENV_DIR"
        rm -f "$STAMP"
    fi
    if [[ -f $STAMP && ! $REPO_ROOT/pyproject.toml -nt $STAMP ]]; then
        log ".venv: up to date with pyproject.toml"
        return 0
    fi
    log "installing the project into .venv: pip install -e '.[dev]'"
    # (The filter drops pip's warnings about this machine's pip.conf listing absent local
    # indexes; pip's own exit code still decides, through pipefail.)
    (cd "$REPO_ROOT" && "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check \
        --progress-bar off -q -e '.[dev]') 2>&1 |
        { grep -v 'is neither a file nor a directory' || true; } >&2
    touch "$STAMP"
}

cmd_deps() {
    case ${1:-} in
    "") deps_system && deps_venv ;;
    --system) deps_system ;;
    --venv) deps_venv ;;
    *) die "usage: services.sh deps [--system | --venv]" ;;
    esac
}

# ----------------------------------------------------------------------------------- locking

# Runs a command that leaves a daemon behind with every file descriptor above 2 closed, so the
# daemon does not keep the lock below, or a pipe of whoever called us, open for its lifetime.
detached() {
    (
        local fd
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
                eval "exec $fd>&-"
            fi
        done
        "$@"
    )
}

# Serialises start/stop/clean (the daemons are started through `detached`).
take_lock() {
    mkdir -p "$DEV_DIR"
    exec 9>"$DEV_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for $DEV_DIR/.lock (another services.sh?)"
}

# ---------------------------------------------------------------------------------- sessions

SESSION=manual
OWNER=-
STOP_ALL=0

session_file() { printf '%s/%s\n' "$SESSIONS_DIR" "$1"; }

session_open() {
    local f
    f=$(session_file "$SESSION")
    mkdir -p "$SESSIONS_DIR"
    [[ -f $f ]] || printf 'owner=%s\n' "$OWNER" >"$f"
}

session_record() {
    local f
    f=$(session_file "$SESSION")
    grep -qx "$1" "$f" 2>/dev/null || printf '%s\n' "$1" >>"$f"
}

session_services() { grep -v '^owner=' "$1" 2>/dev/null || true; }

session_alive() {
    local owner
    owner=$(sed -n 's/^owner=//p' "$1" 2>/dev/null | head -n 1)
    [[ $owner == - ]] && return 0
    [[ $owner =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null
}

# Prints the first other live session; deletes dead ones on the way.
live_other_session() {
    local f
    [[ -d $SESSIONS_DIR ]] || return 1
    for f in "$SESSIONS_DIR"/*; do
        [[ -f $f ]] || continue
        if session_alive "$f"; then
            basename "$f"
            return 0
        fi
        rm -f "$f"
    done
    return 1
}

# ---------------------------------------------------------------------------------- postgres

pg_external() { [[ -n ${DATABASE_URL:-} && $DATABASE_URL != "$PG_URL_PRIVATE" ]]; }

# Where the cluster lives. Normally .dev (PGDATA .dev/postgres). When root runs this, the
# server runs as the `postgres` OS user, which must be able to traverse every directory down
# to .dev: a repo under /root (mode 0700) is not traversable. Then, and when the socket path
# would be too long for a unix socket, the cluster lives in /var/tmp/countersign-<hash of the
# repo path>/ instead, .dev/postgres and .dev/log/postgres.log become symlinks to it, and
# .dev/postgres.base remembers the choice.
pg_choose_base() {
    local why="" alt
    if [[ ! -d $DEV_DIR ]]; then
        install -d -m 0755 "$DEV_DIR"
    fi
    if is_root && ! as_pg test -x "$DEV_DIR"; then
        why="the postgres OS user cannot traverse $DEV_DIR:"$'\n'"$(namei -m "$DEV_DIR" 2>&1 || true)"
    elif ((${#DEV_DIR} + 30 > 107)); then
        why="the socket path under $DEV_DIR would be too long for a unix socket"
    fi
    if [[ -z $why ]]; then
        printf '%s\n' "$DEV_DIR"
        return 0
    fi
    # (Hashed with DEV_DIR, so a second set of services (COUNTERSIGN_DEV_DIR) gets its own.)
    alt=/var/tmp/countersign-$(printf '%s' "$REPO_ROOT${COUNTERSIGN_DEV_DIR:+:$DEV_DIR}" | sha256sum | cut -c1-12)
    log "Postgres cluster goes to $alt because $why"
    printf '%s\n' "$alt"
}

pg_paths() {
    [[ -n ${PG_BASE:-} ]] && return 0
    local recorded=$DEV_DIR/postgres.base
    if [[ -f $recorded && -f $(<"$recorded")/postgres/PG_VERSION ]]; then
        PG_BASE=$(<"$recorded")
    else
        PG_BASE=$(pg_choose_base)
    fi
    PGDATA_DIR=$PG_BASE/postgres
    PG_SOCK_DIR=$PG_BASE/pgsocket
    PG_LOG=$PG_BASE/log/postgres.log
}

pg_tail_log() {
    if [[ -f $PG_LOG ]]; then
        log "last lines of $PG_LOG:"
        tail -n 20 "$PG_LOG" >&2 || true
    fi
}

pg_running() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] && as_pg "$PGB/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

pg_init() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
    log "initialising a Postgres cluster in $PGDATA_DIR"
    install -d -m 0755 "$PG_BASE" "$PG_BASE/log"
    install -d -m 0700 "$PGDATA_DIR"
    install -d -m 0755 "$PG_SOCK_DIR"
    touch "$PG_LOG"
    if is_root; then
        chown postgres:postgres "$PGDATA_DIR" "$PG_SOCK_DIR" "$PG_LOG"
    fi
    if ! as_pg "$PGB/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >>"$PG_LOG" 2>&1; then
        pg_tail_log
        die "initdb failed; see $PG_LOG"
    fi
    cat >"$PGDATA_DIR/pg_hba.conf" <<'EOF'
# Written by scripts/services.sh: a development cluster, trust auth on loopback only
# (the server also listens on 127.0.0.1 only).
local   all          all                  trust
host    all          all    127.0.0.1/32  trust
host    all          all    ::1/128       trust
local   replication  all                  trust
host    replication  all    127.0.0.1/32  trust
EOF
    printf "\n# Countersign's development settings (rewritten at each start)\ninclude_if_exists = 'countersign.conf'\n" \
        >>"$PGDATA_DIR/postgresql.conf"
    if is_root; then
        chown postgres:postgres "$PGDATA_DIR/pg_hba.conf"
    fi
    chmod 0600 "$PGDATA_DIR/pg_hba.conf"
    printf '%s\n' "$PG_BASE" >"$DEV_DIR/postgres.base"
    if [[ $PG_BASE != "$DEV_DIR" ]]; then
        mkdir -p "$DEV_DIR/log"
        ln -sfn "$PGDATA_DIR" "$DEV_DIR/postgres"
        ln -sfn "$PG_LOG" "$DEV_DIR/log/postgres.log"
    fi
}

pg_write_conf() {
    local conf=$PGDATA_DIR/countersign.conf
    cat >"$conf" <<EOF
# Written by scripts/services.sh at each start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
max_connections = 200
# A development cluster: a crash may lose the last commits, never corrupts (the faults
# suite turns it on: COUNTERSIGN_PG_SYNCHRONOUS_COMMIT=on).
synchronous_commit = $PG_SYNCHRONOUS_COMMIT
EOF
    if is_root; then
        chown postgres:postgres "$conf"
    fi
}

pg_wait() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$PGB/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; do
        if ((SECONDS >= deadline)); then
            pg_tail_log
            die "Postgres did not accept connections on 127.0.0.1:$PG_PORT within ${WAIT_SECONDS}s; see $PG_LOG"
        fi
        sleep 0.5
    done
}

pg_create_db() {
    local exists
    exists=$("$PGB/psql" -X -q -t -A -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -c "select 1 from pg_database where datname = '$PG_DB'")
    if [[ -z $exists ]]; then
        log "creating database $PG_DB"
        "$PGB/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
    fi
}

pg_start() {
    if pg_external; then
        log "DATABASE_URL is set: using it, not starting the private Postgres"
        return 0
    fi
    pg_bin
    pg_paths
    if pg_running; then
        log "Postgres already running on 127.0.0.1:$PG_PORT (data: $PGDATA_DIR): reusing it"
    else
        if cs_port_open "$PG_PORT"; then
            die "something else listens on 127.0.0.1:$PG_PORT (not the cluster in $PGDATA_DIR): stop it, or set DATABASE_URL or COUNTERSIGN_PG_PORT"
        fi
        pg_init
        pg_write_conf
        session_record postgres
        log "starting Postgres on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
        if ! detached as_pg "$PGB/pg_ctl" start -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$WAIT_SECONDS" -s; then
            pg_tail_log
            die "Postgres failed to start; see $PG_LOG"
        fi
    fi
    pg_wait
    pg_create_db
}

pg_stop() {
    PGB=$(find_pg_bin) || {
        log "Postgres: not installed, nothing to stop"
        return 0
    }
    pg_paths
    if ! pg_running; then
        log "Postgres: not running"
        return 0
    fi
    log "stopping Postgres (data: $PGDATA_DIR)"
    if ! as_pg "$PGB/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t "$WAIT_SECONDS" -s; then
        log "fast shutdown timed out; using immediate"
        as_pg "$PGB/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t "$WAIT_SECONDS" -s
    fi
}

# ------------------------------------------------------------------------------------- redis

redis_external() {
    [[ -n ${REDIS_URL:-} && ! $REDIS_URL =~ ^redis://(127\.0\.0\.1|localhost):${REDIS_PORT}(/[0-9]+)?/?$ ]]
}

# The pid of .dev's redis-server, if it runs.
redis_pid() {
    local pid comm
    [[ -f $REDIS_DIR/redis.pid ]] || return 1
    pid=$(<"$REDIS_DIR/redis.pid")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/comm ]]; then
        comm=$(<"/proc/$pid/comm")
        [[ $comm == redis-server* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_wait() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until redis_ping; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
            die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${WAIT_SECONDS}s; see $REDIS_DIR/redis.log"
        fi
        sleep 0.2
    done
}

redis_start() {
    if redis_external; then
        log "REDIS_URL is set: using it, not starting the private Redis"
        return 0
    fi
    if ! have redis-server || ! have redis-cli; then
        die "redis-server/redis-cli not found (run: scripts/services.sh deps)"
    fi
    install -d -m 0755 "$REDIS_DIR"
    if redis_pid >/dev/null; then
        log "Redis already running on 127.0.0.1:$REDIS_PORT (dir: $REDIS_DIR): reusing it"
    else
        if cs_port_open "$REDIS_PORT"; then
            die "something else listens on 127.0.0.1:$REDIS_PORT (not the redis in $REDIS_DIR): stop it, or set REDIS_URL or COUNTERSIGN_REDIS_PORT"
        fi
        cat >"$REDIS_DIR/redis.conf" <<EOF
# Written by scripts/services.sh at each start.
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize yes
dir "$REDIS_DIR"
pidfile "$REDIS_DIR/redis.pid"
logfile "$REDIS_DIR/redis.log"
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
EOF
        session_record redis
        log "starting Redis on 127.0.0.1:$REDIS_PORT (log: $REDIS_DIR/redis.log)"
        (cd "$REDIS_DIR" && detached redis-server "$REDIS_DIR/redis.conf") ||
            die "redis-server failed to start; see $REDIS_DIR/redis.log"
    fi
    redis_wait
}

redis_stop() {
    local pid deadline=$((SECONDS + WAIT_SECONDS))
    if ! pid=$(redis_pid); then
        log "Redis: not running"
        return 0
    fi
    log "stopping Redis (pid $pid)"
    kill -TERM "$pid" # redis saves and exits on SIGTERM
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "Redis did not exit within ${WAIT_SECONDS}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
}

stop_service() {
    case $1 in
    postgres) pg_stop ;;
    redis) redis_stop ;;
    *) log "unknown service '$1' in a session file; ignoring it" ;;
    esac
}

# ---------------------------------------------------------------------------------- commands

parse_session_args() {
    while (($#)); do
        case $1 in
        --session)
            SESSION=${2:?--session needs a name}
            shift 2
            ;;
        --owner-pid)
            OWNER=${2:?--owner-pid needs a pid}
            shift 2
            ;;
        --all)
            STOP_ALL=1
            shift
            ;;
        *) die "unknown option: $1" ;;
        esac
    done
    [[ $SESSION =~ ^[A-Za-z0-9._-]+$ ]] || die "bad session name: $SESSION"
    [[ $OWNER == - || $OWNER =~ ^[0-9]+$ ]] || die "bad owner pid: $OWNER"
}

cmd_start() {
    parse_session_args "$@"
    take_lock
    session_open
    pg_start
    redis_start
}

cmd_stop() {
    local f heir svc
    local -a services=()
    parse_session_args "$@"
    take_lock
    if ((STOP_ALL)); then
        pg_stop
        redis_stop
        rm -rf "$SESSIONS_DIR"
        return 0
    fi
    f=$(session_file "$SESSION")
    if [[ ! -f $f ]]; then
        log "session $SESSION: nothing recorded, nothing to stop"
        return 0
    fi
    mapfile -t services < <(session_services "$f")
    rm -f "$f"
    if ((${#services[@]} == 0)); then
        log "session $SESSION started nothing; leaving the services as they are"
        return 0
    fi
    if heir=$(live_other_session); then
        log "leaving ${services[*]} running: session $heir still uses them (it will stop them)"
        for svc in "${services[@]}"; do
            grep -qx "$svc" "$SESSIONS_DIR/$heir" || printf '%s\n' "$svc" >>"$SESSIONS_DIR/$heir"
        done
        return 0
    fi
    for svc in "${services[@]}"; do
        stop_service "$svc"
    done
}

cmd_env() {
    local db=0 rc=0 database_url redis_url
    while (($#)); do
        case $1 in
        --redis-db)
            db=${2:?--redis-db needs a number}
            shift 2
            ;;
        *) die "unknown option: $1" ;;
        esac
    done
    [[ $db =~ ^[0-9]+$ ]] || die "--redis-db needs a number"
    if pg_external; then
        database_url=$DATABASE_URL
    else
        database_url=$PG_URL_PRIVATE
        cs_port_open "$PG_PORT" || {
            log "warning: the private Postgres is not running (scripts/services.sh start)"
            rc=1
        }
    fi
    if redis_external; then
        redis_url=$REDIS_URL
    else
        redis_url=redis://127.0.0.1:$REDIS_PORT/$db
        cs_port_open "$REDIS_PORT" || {
            log "warning: the private Redis is not running (scripts/services.sh start)"
            rc=1
        }
    fi
    printf 'export DATABASE_URL=%q\n' "$database_url"
    printf 'export REDIS_URL=%q\n' "$redis_url"
    # Settings default to production (debug off); these services are for development, so the
    # shells and commands that use them (make run, test, shell, migrate...) get debug on unless
    # DJANGO_DEBUG is already set (environment or .env).
    printf 'export DJANGO_DEBUG=%q\n' "${DJANGO_DEBUG:-1}"
    return "$rc"
}

cmd_status() {
    local f
    if pg_external; then
        echo "postgres: external (DATABASE_URL is set)"
    elif find_pg_bin >/dev/null; then
        pg_bin
        pg_paths
        if pg_running; then
            echo "postgres: running on 127.0.0.1:$PG_PORT  data=$PGDATA_DIR  log=$PG_LOG"
        else
            echo "postgres: stopped  data=$PGDATA_DIR"
        fi
    else
        echo "postgres: not installed (scripts/services.sh deps)"
    fi
    if redis_external; then
        echo "redis: external (REDIS_URL is set)"
    elif redis_pid >/dev/null; then
        echo "redis: running on 127.0.0.1:$REDIS_PORT  dir=$REDIS_DIR  log=$REDIS_DIR/redis.log"
    else
        echo "redis: stopped  dir=$REDIS_DIR"
    fi
    if [[ -d $SESSIONS_DIR ]]; then
        for f in "$SESSIONS_DIR"/*; do
            [[ -f $f ]] || continue
            printf 'session %s: %s; started: %s\n' "$(basename "$f")" \
                "$(session_alive "$f" && echo live || echo gone)" \
                "$(session_services "$f" | tr '\n' ' ')"
        done
    fi
}

cmd_clean() {
    local force=0 base="" answer
    [[ ${1:-} == --force ]] && force=1
    if ((!force)); then
        [[ -t 0 ]] || die "not deleting .dev without confirmation: re-run with --force (make clean-dev FORCE=1)"
        read -r -p "Stop the services and delete $DEV_DIR (the dev database and Redis data)? [y/N] " answer
        [[ $answer == [yY]* ]] || die "aborted"
    fi
    cmd_stop --all
    if [[ -f $DEV_DIR/postgres.base ]]; then
        base=$(<"$DEV_DIR/postgres.base")
    fi
    if [[ $base == /var/tmp/countersign-* ]]; then
        log "deleting $base"
        rm -rf "$base"
    fi
    log "deleting $DEV_DIR"
    rm -rf "$DEV_DIR"
}

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

main() {
    local cmd=${1:-}
    (($#)) && shift
    case $cmd in
    deps) cmd_deps "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    env) cmd_env "$@" ;;
    status) cmd_status "$@" ;;
    clean) cmd_clean "$@" ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
