#!/usr/bin/env bash
# The bank in distributed mode on this machine: one process per role instance, sharing a private
# PostgreSQL (dev/postgres.sh) and a real Kafka broker (dev/kafka.sh), for development and tests.
#
#   dev/cluster.sh up [OPTIONS] [-- SERVE_ARGS...]
#       --replicas N        instances of each of auth, account, history, mypage, request (default 2, 1..9)
#       --gateway-port P    the one gateway's port (default 8080)
#       --bind ADDR         the gateway's listen address (default 127.0.0.1; the others always 127.0.0.1)
#       --partitions N      partitions of the Kafka topics (default 8)
#       --namespace NAME    Kafka namespace: topics and groups become NAME.onlinebank.* and NAME.ROLE,
#                           apart from other banks and test runs on the broker (default: none)
#       --keep-data         reuse database onlinebank_cluster, the topics, the secret and the logs;
#                           without it the database is recreated empty, the cluster's topics
#                           ([NAME.]onlinebank.*) are deleted and the data dir (secret.key) and logs wiped
#       SERVE_ARGS          appended to every `onlinebank serve` (e.g. -- --request-wait-ms 1000)
#     Starts PostgreSQL and Kafka when needed, then auth 1 (it creates the shared secret.key), then
#     everything else; waits until every process answers GET /health/ready with 200 (60 s). When the
#     cluster is already up it says so, starts any recorded process that is dead, and prints the status.
#   dev/cluster.sh down [--all]     SIGTERM every process, SIGKILL what is left after 10 s;
#                                   --all also stops Kafka and PostgreSQL
#   dev/cluster.sh status           role, instance, pid, state (ready / not-ready / dead), url
#   dev/cluster.sh kill ROLE I      kill -9 one process (gateway is instance 1)
#   dev/cluster.sh restart ROLE I   stop it if alive, start it again with its recorded command, wait ready
#   dev/cluster.sh logs ROLE I [-f] print (or follow) one process's log
#   dev/cluster.sh errors           the distinct WARN/ERROR messages of all logs, with counts
#   dev/cluster.sh help
#
# Ports (fixed, so a restart comes back on the same port): BASE+1.. auth, BASE+11.. account,
# BASE+21.. history, BASE+31.. mypage, BASE+41.. request (BASE = CLUSTER_BASE_PORT, default 18100);
# the gateway on --gateway-port. Every process: serve ROLE --listen 127.0.0.1:PORT --data-dir
# STATE/data --database postgres://.../onlinebank_cluster --bus kafka://BOOTSTRAP?partitions=N
# (&namespace=NAME with --namespace), plus
# peer lists (request: --auth-url; gateway: --request-url --auth-url --mypage-url --history-url
# --account-url, each a comma list of all instances of that role).
#
# State under STATE = ${ONLINEBANK_DEV_DIR:-/tmp/onlinebank-dev}/cluster: data/ (the shared
# secret.key), logs/ROLE-I.log, pids/ROLE-I.pid, cmds/ROLE-I.cmd (the full command line, one line,
# shell-quoted; restart reuses it), cluster.env (the settings of the last up).
#
# Environment:
#   ONLINEBANK_BIN          the executable (default target/release/onlinebank, else target/debug/onlinebank,
#                           else `cargo build --release -p onlinebank` once)
#   ONLINEBANK_DEV_DIR      state root shared with dev/postgres.sh and dev/kafka.sh (default /tmp/onlinebank-dev)
#   CLUSTER_BASE_PORT       default 18100
#   CLUSTER_READY_TIMEOUT   seconds to wait for readiness (default 60)
#   CLUSTER_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL (default 10)
#   RUST_LOG                passed on to the processes (their default: info,sqlx=warn)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DEV_DIR="${ONLINEBANK_DEV_DIR:-/tmp/onlinebank-dev}"
STATE="$DEV_DIR/cluster"
DATA="$STATE/data"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
CMDS="$STATE/cmds"
ENVFILE="$STATE/cluster.env"
BASE_PORT="${CLUSTER_BASE_PORT:-18100}"
READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-60}"
STOP_TIMEOUT="${CLUSTER_STOP_TIMEOUT:-10}"
DB_NAME=onlinebank_cluster
# Backend roles in start order; the gateway comes last.
ROLES=(auth account history mypage request)

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

role_offset() {
    case "$1" in
        auth) echo 0 ;;
        account) echo 10 ;;
        history) echo 20 ;;
        mypage) echo 30 ;;
        request) echo 40 ;;
        *) die "unknown role $1 (auth, account, history, mypage, request, gateway)" ;;
    esac
}

port_of() { # ROLE I
    echo $((BASE_PORT + $(role_offset "$1") + $2))
}

name_of() { echo "$1-$2"; }

# --- processes ------------------------------------------------------------------------------

# The pid of ROLE-I when it is alive and still our process (its command line holds its listen
# address), else nothing and status 1.
live_pid() {
    local name="$1" pidfile="$PIDS/$1.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    local listen
    listen="$(listen_of "$name")" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "--listen $listen " >/dev/null || return 1
    echo "$pid"
}

# The --listen address recorded in ROLE-I's command file.
listen_of() {
    local -a cmd
    read_cmd "$1" cmd || return 1
    local i
    for ((i = 0; i < ${#cmd[@]} - 1; i++)); do
        if [ "${cmd[$i]}" = --listen ]; then
            echo "${cmd[$((i + 1))]}"
            return 0
        fi
    done
    return 1
}

# read_cmd NAME ARRAYVAR: the recorded command line of NAME into the array.
read_cmd() {
    local file="$CMDS/$1.cmd"
    [ -f "$file" ] || return 1
    local line
    line="$(cat "$file")"
    # The file is written by write_cmd, so eval only undoes its quoting.
    eval "$2=($line)"
}

# One line, each argument as is when it is plain, else single-quoted; read_cmd undoes it.
write_cmd() { # NAME ARGS...
    local name="$1" arg line=""
    shift
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
            line+="${line:+ }$arg"
        else
            line+="${line:+ }${arg@Q}"
        fi
    done
    echo "$line" >"$CMDS/$name.cmd"
}

url_of() { # NAME -> http://listen (the gateway's 0.0.0.0 shown as 127.0.0.1)
    local listen
    listen="$(listen_of "$1")" || return 1
    echo "http://${listen/#0.0.0.0:/127.0.0.1:}"
}

is_ready() { # NAME
    local url
    url="$(url_of "$1")" || return 1
    curl -fsS -o /dev/null --max-time 2 "$url/health/ready" 2>/dev/null
}

# Start NAME from its command file, detached (own session, stdin from /dev/null), appending to its log.
launch() {
    local name="$1" pid
    local -a cmd
    read_cmd "$name" cmd || die "no recorded command for $name ($CMDS/$name.cmd)"
    mkdir -p "$LOGS" "$PIDS"
    printf '=== %s cluster.sh: starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$LOGS/$name.log"
    # setsid: a Ctrl-C at the terminal that ran `up` does not reach the cluster. The background
    # child is no process group leader, so setsid execs in place and $! is the server's pid.
    setsid nohup "${cmd[@]}" </dev/null >>"$LOGS/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDS/$name.pid"
}

# Wait until every NAME answers /health/ready; fail early when one of them exits.
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) name
    local -a left=("$@") pending=()
    while :; do
        pending=()
        for name in "${left[@]}"; do
            # (kill -0 on the recorded pid, not live_pid: right after launch the child may not have
            # exec'd the server yet, so its command line is still this script's.)
            if ! kill -0 "$(cat "$PIDS/$name.pid" 2>/dev/null || echo 0)" 2>/dev/null; then
                say "$name exited during startup; last lines of $LOGS/$name.log:"
                tail -n 20 "$LOGS/$name.log" >&2 || true
                return 1
            fi
            is_ready "$name" || pending+=("$name")
        done
        [ "${#pending[@]}" -eq 0 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "not ready after ${READY_TIMEOUT}s: ${pending[*]}"
            for name in "${pending[@]}"; do
                say "last lines of $LOGS/$name.log:"
                tail -n 10 "$LOGS/$name.log" >&2 || true
            done
            return 1
        fi
        left=("${pending[@]}")
        sleep 0.2
    done
}

# SIGTERM the given NAMEs, wait up to STOP_TIMEOUT s for all of them, then SIGKILL the rest.
stop_names() {
    local name pid
    local -a pids=() names=()
    for name in "$@"; do
        if pid="$(live_pid "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name")
        fi
        rm -f "$PIDS/$name.pid"
    done
    [ "${#pids[@]}" -eq 0 ] && return 0
    local deadline=$((SECONDS + STOP_TIMEOUT)) alive i
    while :; do
        alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            for i in "${!pids[@]}"; do
                if kill -0 "${pids[$i]}" 2>/dev/null; then
                    say "${names[$i]} (pid ${pids[$i]}) still alive after ${STOP_TIMEOUT}s: SIGKILL"
                    kill -KILL "${pids[$i]}" 2>/dev/null || true
                fi
            done
            for pid in "${pids[@]}"; do
                while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            done
            break
        fi
        sleep 0.2
    done
    say "stopped ${names[*]}"
}

# Every recorded process, backends in role order then the gateway (instances are 1..9, so the
# glob's order is numeric).
all_names() {
    local role f
    [ -d "$CMDS" ] || return 0
    for role in "${ROLES[@]}" gateway; do
        for f in "$CMDS/$role"-*.cmd; do
            [ -e "$f" ] || continue
            basename "$f" .cmd
        done
    done
}

# --- binary ---------------------------------------------------------------------------------

pick_binary() {
    local bin
    if [ -n "${ONLINEBANK_BIN:-}" ]; then
        bin="$ONLINEBANK_BIN"
        [ -x "$bin" ] || die "ONLINEBANK_BIN=$bin is not an executable"
    elif [ -x "$ROOT/target/release/onlinebank" ]; then
        bin="$ROOT/target/release/onlinebank"
    elif [ -x "$ROOT/target/debug/onlinebank" ]; then
        bin="$ROOT/target/debug/onlinebank"
    else
        say "no target/release/onlinebank nor target/debug/onlinebank: cargo build --release -p onlinebank"
        (cd "$ROOT" && cargo build --release -p onlinebank) >&2
        bin="$ROOT/target/release/onlinebank"
    fi
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
    local newer
    newer="$(find "$ROOT/crates" "$ROOT/Cargo.lock" -newer "$bin" \( -name '*.rs' -o -name '*.toml' -o -name '*.sql' -o -name Cargo.lock \) -print -quit 2>/dev/null || true)"
    if [ -n "$newer" ]; then
        say "warning: $bin is older than the sources (e.g. ${newer#"$ROOT"/}); rebuild or set ONLINEBANK_BIN"
    fi
    echo "$bin"
}

# --- infrastructure -------------------------------------------------------------------------

start_infra() {
    "$HERE/postgres.sh" install
    "$HERE/postgres.sh" start
    "$HERE/kafka.sh" fetch
    "$HERE/kafka.sh" start
}

database_url() { # KEEP(0|1)
    if [ "$1" = 1 ]; then
        local exists
        exists="$("$HERE/postgres.sh" psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")"
        if [ "$exists" = 1 ]; then
            local url
            url="$("$HERE/postgres.sh" url)"
            echo "${url%/*}/$DB_NAME"
            return 0
        fi
        say "database $DB_NAME does not exist yet: creating it"
    fi
    "$HERE/postgres.sh" createdb "$DB_NAME"
}

delete_topics() { # NAMESPACE (may be empty)
    local prefix="${1:+$1.}onlinebank."
    local regex="${prefix//./\\.}.*"
    say "deleting the Kafka topics ${prefix}* (a fresh start; --keep-data keeps them)"
    # TopicCommand matches the whole name, so other namespaces' topics are left alone.
    "$HERE/kafka.sh" topics --delete --if-exists --topic "$regex" >&2 \
        || die "deleting the Kafka topics failed"
    # Deletion is asynchronous: wait until the broker no longer lists them, so the roles recreate
    # them with this run's partition count.
    local deadline=$((SECONDS + 30))
    while "$HERE/kafka.sh" topics --list 2>/dev/null | grep -E "^$regex\$" >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "the ${prefix}* topics are still listed 30 s after deletion"
        sleep 1
    done
}

# --- commands -------------------------------------------------------------------------------

print_status() {
    local name pid state url ready=0 total=0
    printf '%-8s %-3s %-8s %-10s %s\n' ROLE I PID STATE URL
    while read -r name; do
        [ -n "$name" ] || continue
        total=$((total + 1))
        url="$(url_of "$name" || echo '?')"
        if pid="$(live_pid "$name")"; then
            if is_ready "$name"; then
                state=ready
                ready=$((ready + 1))
            else
                state=not-ready
            fi
        else
            pid=-
            state=dead
        fi
        printf '%-8s %-3s %-8s %-10s %s\n' "${name%-*}" "${name##*-}" "$pid" "$state" "$url"
    done < <(all_names)
    echo "$ready/$total ready"
    [ "$total" -gt 0 ] && [ "$ready" -eq "$total" ]
}

any_alive() {
    local name
    while read -r name; do
        [ -n "$name" ] || continue
        live_pid "$name" >/dev/null && return 0
    done < <(all_names)
    return 1
}

cmd_up() {
    local replicas=2 gateway_port=8080 partitions=8 bind=127.0.0.1 keep=0 namespace=""
    local -a extra=()
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --replicas) replicas="${2:?--replicas N}"; shift 2 ;;
            --replicas=*) replicas="${1#*=}"; shift ;;
            --gateway-port) gateway_port="${2:?--gateway-port P}"; shift 2 ;;
            --gateway-port=*) gateway_port="${1#*=}"; shift ;;
            --partitions) partitions="${2:?--partitions N}"; shift 2 ;;
            --partitions=*) partitions="${1#*=}"; shift ;;
            --bind) bind="${2:?--bind ADDR}"; shift 2 ;;
            --bind=*) bind="${1#*=}"; shift ;;
            --namespace) namespace="${2:?--namespace NAME}"; shift 2 ;;
            --namespace=*) namespace="${1#*=}"; shift ;;
            --keep-data) keep=1; shift ;;
            --) shift; extra=("$@"); break ;;
            *) die "up: unknown option $1 (see dev/cluster.sh help)" ;;
        esac
    done
    [[ "$replicas" =~ ^[1-9]$ ]] || die "--replicas must be 1..9"
    [[ "$gateway_port" =~ ^[0-9]+$ ]] || die "--gateway-port must be a port number"
    [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "--partitions must be a positive number"
    [[ "$namespace" =~ ^[A-Za-z0-9_-]*$ ]] || die "--namespace takes letters, digits, - and _"

    if any_alive; then
        say "already running (settings of the running cluster kept; dev/cluster.sh down to change them)"
        local name
        local -a dead=()
        while read -r name; do
            [ -n "$name" ] || continue
            live_pid "$name" >/dev/null || dead+=("$name")
        done < <(all_names)
        if [ "${#dead[@]}" -gt 0 ]; then
            say "starting the dead ones again: ${dead[*]}"
            for name in "${dead[@]}"; do launch "$name"; done
            wait_ready "${dead[@]}" || true
        fi
        print_status
        return
    fi

    local t0=$SECONDS bin
    bin="$(pick_binary)"
    start_infra
    local db bus
    db="$(database_url "$keep")"
    bus="kafka://$("$HERE/kafka.sh" bootstrap)?partitions=$partitions${namespace:+&namespace=$namespace}"
    if [ "$keep" = 0 ]; then
        delete_topics "$namespace"
        rm -rf "$DATA" "$LOGS"
    fi
    rm -rf "$PIDS" "$CMDS"
    mkdir -p "$DATA" "$LOGS" "$PIDS" "$CMDS"
    say "infrastructure ready after $((SECONDS - t0))s; binary $bin"

    # Peer lists and command files.
    local role i
    declare -A urls=()
    for role in "${ROLES[@]}"; do
        local list=""
        for ((i = 1; i <= replicas; i++)); do
            list+="${list:+,}http://127.0.0.1:$(port_of "$role" "$i")"
        done
        urls[$role]="$list"
    done
    local -a common=(--data-dir "$DATA" --database "$db" --bus "$bus")
    for role in "${ROLES[@]}"; do
        for ((i = 1; i <= replicas; i++)); do
            local -a peers=()
            [ "$role" = request ] && peers=(--auth-url "${urls[auth]}")
            write_cmd "$(name_of "$role" "$i")" "$bin" serve "$role" --listen "127.0.0.1:$(port_of "$role" "$i")" \
                "${common[@]}" "${peers[@]}" "${extra[@]}"
        done
    done
    write_cmd gateway-1 "$bin" serve gateway --listen "$bind:$gateway_port" "${common[@]}" \
        --request-url "${urls[request]}" --auth-url "${urls[auth]}" --mypage-url "${urls[mypage]}" \
        --history-url "${urls[history]}" --account-url "${urls[account]}" "${extra[@]}"
    cat >"$ENVFILE" <<EOF
# Written by dev/cluster.sh up at $(date -u +%FT%TZ)
REPLICAS=$replicas
GATEWAY_PORT=$gateway_port
BIND=$bind
PARTITIONS=$partitions
NAMESPACE=$namespace
BIN=$bin
DATABASE=$db
BUS=$bus
EOF

    # auth 1 first: the first process creates the shared secret.key, so it must be there before
    # any other process reads the data dir.
    local t1=$SECONDS name
    launch auth-1
    wait_ready auth-1 || die "auth-1 did not come up"
    local -a rest=()
    while read -r name; do
        [ -n "$name" ] && [ "$name" != auth-1 ] && rest+=("$name")
    done < <(all_names)
    for name in "${rest[@]}"; do launch "$name"; done
    wait_ready "${rest[@]}" || die "the cluster did not come up (dev/cluster.sh status; dev/cluster.sh down)"
    say "all $((${#rest[@]} + 1)) processes ready $((SECONDS - t1))s after the first start ($((SECONDS - t0))s in all)"
    print_status || true
    echo
    echo "gateway: http://${bind/#0.0.0.0/127.0.0.1}:$gateway_port"
    echo "stop:    dev/cluster.sh down        (down --all also stops Kafka and PostgreSQL)"
}

cmd_down() {
    local all=0
    case "${1:-}" in
        --all) all=1 ;;
        "") ;;
        *) die "down: unknown option $1" ;;
    esac
    local -a names=()
    local name
    while read -r name; do
        [ -n "$name" ] && names+=("$name")
    done < <(all_names)
    # The gateway first, so no new calls come in while the backends drain.
    if [ -f "$CMDS/gateway-1.cmd" ]; then stop_names gateway-1; fi
    local -a backends=()
    for name in "${names[@]}"; do
        [ "$name" != gateway-1 ] && backends+=("$name")
    done
    if [ "${#backends[@]}" -gt 0 ]; then stop_names "${backends[@]}"; fi
    if [ "$all" = 1 ]; then
        "$HERE/kafka.sh" stop
        "$HERE/postgres.sh" stop
    fi
}

check_member() { # ROLE I -> NAME
    local role="${1:-}" i="${2:-}"
    if [ -z "$role" ] || ! [[ "$i" =~ ^[1-9]$ ]]; then
        die "usage: dev/cluster.sh ${FUNCNAME[1]#cmd_} ROLE I"
    fi
    [ -f "$CMDS/$role-$i.cmd" ] || die "$role $i is not part of the cluster (no $CMDS/$role-$i.cmd)"
    echo "$role-$i"
}

cmd_kill() {
    local name pid
    name="$(check_member "$@")"
    if ! pid="$(live_pid "$name")"; then
        say "$name is not running"
        return 0
    fi
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$PIDS/$name.pid"
    say "killed $name (pid $pid, SIGKILL)"
}

cmd_restart() {
    local name t0
    name="$(check_member "$@")"
    stop_names "$name"
    t0=$SECONDS
    launch "$name"
    wait_ready "$name" || die "$name did not come back"
    say "$name ready again after $((SECONDS - t0))s (pid $(cat "$PIDS/$name.pid"), $(url_of "$name"))"
}

cmd_logs() {
    local name
    name="$(check_member "${1:-}" "${2:-}")"
    [ -f "$LOGS/$name.log" ] || die "no log yet: $LOGS/$name.log"
    if [ "${3:-}" = -f ] || [ "${3:-}" = --follow ]; then
        exec tail -n 50 -F "$LOGS/$name.log"
    fi
    cat "$LOGS/$name.log"
}

# Distinct WARN/ERROR messages: the level and the message, without timestamps and fields.
cmd_errors() {
    [ -d "$LOGS" ] || die "no logs in $LOGS"
    local f
    for f in "$LOGS"/*.log; do
        [ -e "$f" ] || continue
        sed 's/\x1b\[[0-9;]*m//g' "$f" \
            | grep -E '^[0-9T:.-]+Z? +(WARN|ERROR)|^onlinebank: ' \
            | sed -E 's/^[0-9T:.-]+Z? +//; s/ [a-z_]+=("[^"]*"|[^ ]*)//g' \
            | sed "s|^|$(basename "$f" .log): |" || true
    done | sed -E 's/^([a-z]+)-[0-9]+: /\1: /' | sort | uniq -c | sort -rn
}

sub="${1:-help}"
[ "$#" -gt 0 ] && shift
cd "$ROOT"
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status)
        if [ -z "$(all_names)" ]; then
            echo "no cluster recorded in $STATE (dev/cluster.sh up)"
            exit 3
        fi
        print_status
        ;;
    kill) cmd_kill "$@" ;;
    restart) cmd_restart "$@" ;;
    logs) cmd_logs "$@" ;;
    errors) cmd_errors ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
