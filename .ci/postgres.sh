#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the PostgreSQL tests: private unix socket only (no TCP), trust
# authentication, data under $BTH_PG_DIR (default /tmp/bth-gateway-pg).
#
#   .ci/postgres.sh start   starts it (initialising when needed); prints the database URL on stdout
#   .ci/postgres.sh url     prints the URL
#   .ci/postgres.sh stop    stops it and deletes its data
#
# Idempotent: `start` on a running server only prints the URL; `stop` on a stopped one does nothing.
# initdb refuses to run as root: as root, the server runs as the unprivileged user $BTH_PG_USER
# (default pgtest, created when missing); as any other user, as that user.
set -euo pipefail

PGBIN="${BTH_PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE="${BTH_PG_DIR:-/tmp/bth-gateway-pg}"
RUN_AS="${BTH_PG_USER:-pgtest}"
DATA="$BASE/data"
SOCK="$BASE/sock"
PORT=5432
# Benchmarks of durable appends set BTH_PG_DURABLE=1 (fsync and synchronous commit on).
DURABILITY=$([ -n "${BTH_PG_DURABLE:-}" ] && echo on || echo off)

log() { echo "postgres.sh: $*" >&2; }

url() {
    echo "postgres://postgres@localhost/postgres?host=$SOCK&port=$PORT"
}

# Runs a command as the server's owner (from /, which that user can always read).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        (cd / && "$@")
    fi
}

running() {
    [ -f "$DATA/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    [ -x "$PGBIN/initdb" ] || { log "no PostgreSQL server binaries in $PGBIN"; exit 1; }
    if [ "$(id -u)" -eq 0 ]; then
        if ! id "$RUN_AS" >/dev/null 2>&1; then
            log "creating unprivileged user $RUN_AS"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS" 2>/dev/null ||
                useradd -M -s /bin/false "$RUN_AS"
        fi
        mkdir -p "$BASE"
        chown "$RUN_AS" "$BASE"
        chmod 0755 "$BASE"
    else
        mkdir -p "$BASE"
    fi
    if running; then
        log "already running"
        url
        return
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        rm -rf "$DATA"
        as_owner mkdir -p "$SOCK"
        log "initdb $DATA"
        as_owner "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C \
            --no-instructions >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; exit 1; }
        cat >>"$DATA/postgresql.conf" <<EOF
# bth-gateway tests: private socket, no TCP; fast, not durable unless BTH_PG_DURABLE is set.
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
unix_socket_permissions = 0777
max_connections = 300
shared_buffers = 128MB
fsync = $DURABILITY
synchronous_commit = $DURABILITY
full_page_writes = $DURABILITY
EOF
    fi
    log "starting PostgreSQL on $SOCK"
    as_owner "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 start >/dev/null ||
        { cat "$BASE/server.log" >&2; exit 1; }
    as_owner "$PGBIN/pg_isready" -h "$SOCK" -p "$PORT" -t 30 >/dev/null
    url
}

stop() {
    if running; then
        log "stopping PostgreSQL"
        as_owner "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
    rm -rf "$BASE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
esac
