#!/usr/bin/env bash
# A private PostgreSQL cluster for development and tests, apart from any system cluster.
#
#   dev/postgres.sh install        install Debian's postgresql package when initdb/pg_ctl are missing
#   dev/postgres.sh start [PORT]   initdb the data dir if it is new, start, wait until it accepts connections
#   dev/postgres.sh stop           fast shutdown (pg_ctl stop -m fast -w); the data dir is kept
#   dev/postgres.sh restart [PORT]
#   dev/postgres.sh status         exit 0 and print the URL when the server is up
#   dev/postgres.sh url            print postgres://onlinebank@127.0.0.1:PORT/postgres
#   dev/postgres.sh createdb NAME  (re)create database NAME, empty, and print its URL
#   dev/postgres.sh psql ARGS...   psql as the superuser onlinebank
#   dev/postgres.sh reset          stop and wipe the state dir (the next start runs initdb afresh)
#
# The cluster: superuser `onlinebank`, trust auth, listening on 127.0.0.1 only, unix socket in the
# state dir, max_connections=300, durable defaults (fsync on). initdb and postgres refuse to run as
# root, so as root they run as the `postgres` system user, which then owns the state dir.
#
# Environment:
#   ONLINEBANK_DEV_DIR   state root, default /tmp/onlinebank-dev (the cluster uses ./postgres under it)
#   PG_PORT              default port for start when none is given (55432)
#   PG_BINDIR            PostgreSQL's bin dir, default the newest /usr/lib/postgresql/*/bin
#   PG_POD_ADDRESS       also listen on this address (e.g. the local Kubernetes node's 10.233.0.1, so
#                        pods reach the cluster), with trust for PG_POD_CIDR (default ADDRESS's /24);
#                        `start` restarts a running server that does not listen there yet. Unset: 127.0.0.1 only
#   PG_TLS_CERT, PG_TLS_KEY  a server certificate (PEM, chain) and its key: start with ssl=on and
#                        accept TCP clients only over TLS (hostssl), as a managed PostgreSQL does;
#                        the files are copied into the data dir (the key 0600, the cluster's owner)
set -euo pipefail

STATE="${ONLINEBANK_DEV_DIR:-/tmp/onlinebank-dev}/postgres"
DATA="$STATE/data"
LOG="$STATE/postgres.log"
PORTFILE="$STATE/port"
SUPERUSER=onlinebank

say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        [ -x "$PG_BINDIR/initdb" ] && { echo "$PG_BINDIR"; return 0; }
        return 1
    fi
    local d
    d="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n1)"
    [ -n "$d" ] || return 1
    dirname "$d"
}

bindir() {
    find_bindir || die "PostgreSQL server binaries not found: run dev/postgres.sh install"
}

cmd_install() {
    if find_bindir >/dev/null; then
        return 0
    fi
    say "installing Debian's postgresql package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q postgresql
    find_bindir >/dev/null || die "apt-get -o DPkg::Lock::Timeout=300 installed postgresql but no /usr/lib/postgresql/*/bin/initdb"
}

# Run a server-side binary as the owner of the cluster: the postgres system user when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

current_port() {
    if [ -f "$PORTFILE" ]; then cat "$PORTFILE"; else echo "${PG_PORT:-55432}"; fi
}

url_for() {
    echo "postgres://$SUPERUSER@127.0.0.1:$(current_port)/$1"
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] || return 1
    as_owner "$(bindir)/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

prepare_state_dir() {
    mkdir -p "$STATE"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "no postgres system user (it comes with Debian's postgresql package)"
        chown postgres:postgres "$STATE"
        runuser -u postgres -- test -w "$STATE" \
            || die "the postgres user cannot write $STATE (check the modes of its parent dirs)"
    fi
}

# Whether something accepts TCP connections on ADDRESS:PORT.
tcp_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

cmd_start() {
    local port="${1:-$(current_port)}"
    local bin
    bin="$(bindir)"
    if is_running; then
        if [ "$(current_port)" = "$port" ] && [ -n "${PG_POD_ADDRESS:-}" ] && ! tcp_open "$PG_POD_ADDRESS" "$port"; then
            say "running without a listener on $PG_POD_ADDRESS: restarting"
            cmd_stop
            cmd_start "$port"
            return
        fi
        if [ "$(current_port)" = "$port" ]; then
            say "already running on 127.0.0.1:$port"
            return 0
        fi
        die "already running on 127.0.0.1:$(current_port); stop it before starting on $port"
    fi
    prepare_state_dir
    if [ ! -f "$DATA/PG_VERSION" ]; then
        say "initdb $DATA"
        as_owner "$bin/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 \
            || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
        as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# dev/postgres.sh
listen_addresses = '127.0.0.1'
max_connections = 300
EOF
    fi
    echo "$port" >"$PORTFILE"
    local options="-p $port -k '$STATE'"
    if [ -n "${PG_TLS_CERT:-}" ]; then
        if [ ! -f "$PG_TLS_CERT" ] || [ ! -f "${PG_TLS_KEY:-}" ]; then die "PG_TLS_CERT and PG_TLS_KEY must both name files"; fi
        local owner
        owner="$(stat -c %U "$DATA")"
        install -o "$owner" -m 0644 "$PG_TLS_CERT" "$DATA/server.crt"
        install -o "$owner" -m 0600 "$PG_TLS_KEY" "$DATA/server.key"
        # Unix socket: trust (the script's own psql); TCP: TLS only.
        printf '%s\n' "# dev/postgres.sh with PG_TLS_CERT: TCP clients only over TLS" \
            "local all all trust" "hostssl all all 127.0.0.1/32 trust" \
            "hostnossl all all 0.0.0.0/0 reject" | as_owner tee "$DATA/pg_hba.conf" >/dev/null
        options="$options -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    fi
    if [ -n "${PG_POD_ADDRESS:-}" ]; then
        [[ "$PG_POD_ADDRESS" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.[0-9]+$ ]] || die "PG_POD_ADDRESS=$PG_POD_ADDRESS: an IPv4 address is expected"
        local cidr="${PG_POD_CIDR:-${BASH_REMATCH[1]}.0/24}"
        local line="host all all $cidr trust"
        as_owner grep -qxF "$line" "$DATA/pg_hba.conf" || echo "$line" | as_owner tee -a "$DATA/pg_hba.conf" >/dev/null
        options="$options -c listen_addresses='127.0.0.1,$PG_POD_ADDRESS'"
    fi
    # Port and socket dir are given on each start, so one cluster can move ports.
    as_owner "$bin/pg_ctl" start -D "$DATA" -l "$LOG" -w -t 60 -o "$options" >/dev/null \
        || { tail -n 30 "$LOG" >&2; die "pg_ctl start failed; see $LOG"; }
    say "ready: $(url_for postgres)"
}

cmd_stop() {
    if ! is_running; then
        say "not running"
        return 0
    fi
    as_owner "$(bindir)/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null
    say "stopped"
}

cmd_status() {
    if is_running; then
        echo "running $(url_for postgres) data $DATA"
        return 0
    fi
    echo "not running"
    return 1
}

run_psql() {
    "$(bindir)/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(current_port)" -U "$SUPERUSER" "$@"
}

cmd_createdb() {
    local name="${1:-}"
    [[ "$name" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "usage: dev/postgres.sh createdb NAME (lower case, digits, _)"
    is_running || die "not running: dev/postgres.sh start first"
    run_psql -q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >&2
    url_for "$name"
}

cmd_reset() {
    if [ -f "$DATA/PG_VERSION" ]; then cmd_stop; fi
    rm -rf "$STATE"
    say "wiped $STATE"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

sub="${1:-}"
[ "$#" -gt 0 ] && shift
case "$sub" in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    restart)
        port="${1:-$(current_port)}"
        cmd_stop
        cmd_start "$port"
        ;;
    status) cmd_status ;;
    url) url_for postgres ;;
    createdb) cmd_createdb "$@" ;;
    psql) run_psql "$@" ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
