# shellcheck shell=bash
# Helpers shared by scripts/*.sh. Source it (after setting CS_TAG); do not run it.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# COUNTERSIGN_DEV_DIR gives a second set of services (the faults suite: scripts/faults.sh) its own files.
DEV_DIR=${COUNTERSIGN_DEV_DIR:-$REPO_ROOT/.dev}
VENV_DIR=$REPO_ROOT/.venv
export REPO_ROOT DEV_DIR VENV_DIR

cs_log() { printf '[%s] %s\n' "${CS_TAG:-countersign}" "$*" >&2; }
cs_die() {
    printf '[%s] error: %s\n' "${CS_TAG:-countersign}" "$*" >&2
    exit 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
cs_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Load KEY=VALUE lines from .env ($CS_DOTENV overrides the path) (the file honcho also reads) without executing it.
# Variables already in the environment win; empty values are skipped; quotes are stripped.
cs_load_dotenv() {
    local file=${CS_DOTENV:-$REPO_ROOT/.env} line key val
    [[ -f $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
        key=${BASH_REMATCH[2]}
        val=${BASH_REMATCH[3]}
        if [[ $val =~ ^\"(.*)\"[[:space:]]*$ ]]; then
            val=${BASH_REMATCH[1]}
        elif [[ $val =~ ^\'(.*)\'[[:space:]]*$ ]]; then
            val=${BASH_REMATCH[1]}
        else
            val=${val%%[[:space:]]#*}
            val=${val%"${val##*[![:space:]]}"}
        fi
        [[ -n $val ]] || continue
        [[ -v $key ]] || export "$key=$val"
    done <"$file"
}
