#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the sweep tests (Debian packages).
#   .ci/postgres.sh install           apt-get install postgresql unless server binaries are already there
#   .ci/postgres.sh available         exit 0 when server binaries are installed
#   eval "$(.ci/postgres.sh start)"   new cluster in a temp dir; prints
#                                     export LIT_REGULARIZE_PG_URL=postgresql://lit@127.0.0.1:PORT/optuna
#                                     export LIT_REGULARIZE_PG_DIR=/tmp/lit_pg.XXXXXX
#   .ci/postgres.sh stop [DIR]        fast shutdown (then SIGKILL), delete DIR (default $LIT_REGULARIZE_PG_DIR)
# Bounded: start gives up after 30 s, stop after ~25 s, and the server shuts itself down after
# $PG_MAX_SECONDS (default 1800) even if nobody calls stop. Trust auth on 127.0.0.1 only: test data, no secrets.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# initdb and postgres refuse to run as root: use the Debian package's 'postgres' user then.
run_as=()
if [ "$(id -u)" -eq 0 ]; then
    run_as=(runuser -u postgres --)
fi
check_server_user() {
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        die "running as root and no 'postgres' user to run the server as"
    fi
}
as_server_user() {
    "${run_as[@]}" "$@"
}

cmd_install() {
    if bindir >/dev/null; then
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # No system cluster on port 5432: the tests start their own.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        $sudo mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 $sudo apt-get update -qq
    timeout 900 $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bindir >/dev/null || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
    local bin dir port i
    bin=$(bindir) || die "no PostgreSQL server binaries; run: .ci/postgres.sh install"
    check_server_user
    dir=$(mktemp -d /tmp/lit_pg.XXXXXX)
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    as_server_user "$bin/initdb" -D "$dir/data" -U lit --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }
    port=$(free_port)
    # setsid + redirected fds: the caller's pipes close at once; timeout is the safety net if stop is never called
    # (SIGINT = PostgreSQL's fast shutdown, SIGKILL 10 s later).
    setsid "${run_as[@]}" timeout -s INT -k 10 "${PG_MAX_SECONDS:-1800}" "$bin/postgres" -D "$dir/data" \
        -h 127.0.0.1 -p "$port" -k "$dir" -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c max_connections=50 </dev/null >"$dir/server.log" 2>&1 &
    for i in $(seq 1 60); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            break
        fi
        sleep 0.5
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" \
        || { cat "$dir/server.log" >&2; cmd_stop "$dir"; die "server did not start within 30 s"; }
    timeout 30 "$bin/createdb" -h 127.0.0.1 -p "$port" -U lit optuna \
        || { cmd_stop "$dir"; die "createdb failed"; }
    echo "export LIT_REGULARIZE_PG_URL=postgresql://lit@127.0.0.1:$port/optuna"
    echo "export LIT_REGULARIZE_PG_DIR=$dir"
}

cmd_stop() {
    local dir="${1:-${LIT_REGULARIZE_PG_DIR:-}}" bin pid
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    case "$dir" in /tmp/lit_pg.*) ;; *) die "stop: $dir is not a directory made by this script" ;; esac
    if [ -f "$dir/data/postmaster.pid" ]; then
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        if bin=$(bindir); then
            as_server_user timeout 20 "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 15 >/dev/null 2>&1 || true
        fi
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    install) cmd_install ;;
    available) bindir >/dev/null ;;
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    *) die "usage: $0 install | available | start | stop [DIR]" ;;
esac
