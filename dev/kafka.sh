#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for development and tests.
#
#   dev/kafka.sh fetch             copy the Kafka jars from Maven Central into the cache (idempotent)
#   dev/kafka.sh start [PORT]      format the log dir if it is new, start the broker, wait until it is ready
#   dev/kafka.sh stop              SIGTERM, wait, then SIGKILL; the log dir is kept
#   dev/kafka.sh restart [PORT]    stop then start, without reformatting: topics and records survive
#   dev/kafka.sh status            exit 0 and print the bootstrap address when the broker is up
#   dev/kafka.sh bootstrap         print the bootstrap address (127.0.0.1:PORT)
#   dev/kafka.sh tls-url           print a bus URL for the SASL_SSL listener (TLS + SASL/PLAIN), with
#                                  its CA file and the user's password: the managed-Kafka set-up
#   dev/kafka.sh reset             stop and wipe the state dir (the next start formats afresh)
#   dev/kafka.sh topics ARGS...    org.apache.kafka.tools.TopicCommand --bootstrap-server ADDR ARGS...
#   dev/kafka.sh tool CLASS ARGS.. run any Kafka main class (e.g. org.apache.kafka.tools.ConsoleProducer)
#   dev/kafka.sh libs | version    print the jar dir / the pinned Kafka version
#
# Main classes: kafka.Kafka (broker), kafka.tools.StorageTool (format), org.apache.kafka.tools.TopicCommand,
# org.apache.kafka.tools.ConsoleProducer, org.apache.kafka.tools.consumer.ConsoleConsumer.
#
# Environment:
#   ONLINEBANK_DEV_DIR      state root, default /tmp/onlinebank-dev (the broker uses ./kafka under it)
#   KAFKA_CACHE_DIR         jar cache root, default ${XDG_CACHE_HOME:-$HOME/.cache}/onlinebank
#   KAFKA_PORT              default port for start when none is given (9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller listener port, default PORT+1
#   KAFKA_TLS_PORT          SASL_SSL listener port, default PORT+2
#   KAFKA_POD_ADDRESS       also a PLAINTEXT listener POD on this address, advertised as itself (e.g. the
#                           local Kubernetes node's 10.233.0.1, so pods reach the broker); `start`
#                           restarts a running broker that lacks it. Unset: 127.0.0.1 only
#   KAFKA_POD_PORT          that listener's port (default 19092)
#   KAFKA_HEAP_OPTS         default "-Xms256m -Xmx512m"
#   KAFKA_START_TIMEOUT     seconds to wait for readiness, default 90
#   KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM before SIGKILL, default 60
#
# The broker has a second listener, SASL_SSL on 127.0.0.1:KAFKA_TLS_PORT, as a managed Kafka (MSK,
# Confluent Cloud) has: its certificate is signed by a CA of its own, both made with keytool into
# the state dir's tls/ on the first start (PKCS12 keystore; the CA also as PEM for clients), and
# SASL/PLAIN user `onlinebank` with a random password kept in tls/password.
#
# The Kafka version is the one pinned in dev/kafka/pom.xml.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[ -n "$KAFKA_VERSION" ] || { echo "kafka.sh: no <kafka.version> in $POM" >&2; exit 1; }

CACHE_ROOT="${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/onlinebank}"
LIBS="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"
STATE="${ONLINEBANK_DEV_DIR:-/tmp/onlinebank-dev}/kafka"
DATA="$STATE/data"
PROPS="$STATE/server.properties"
PIDFILE="$STATE/kafka.pid"
PORTFILE="$STATE/port"
TLS="$STATE/tls"
LOG="$STATE/kafka.log"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"

say() { echo "kafka.sh: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Java 17 and Maven come with the machine; install them from Debian only when missing.
need_tools() {
    local missing=()
    command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
    if [ "${1:-}" = mvn ]; then command -v mvn >/dev/null 2>&1 || missing+=(maven); fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing ${missing[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
}

cmd_fetch() {
    if [ -f "$LIBS/.complete" ]; then
        return 0
    fi
    need_tools mvn
    say "fetching Apache Kafka $KAFKA_VERSION jars into $LIBS"
    mkdir -p "$(dirname "$LIBS")"
    local tmp="$LIBS.tmp.$$"
    rm -rf "$tmp"
    # dependency:copy-dependencies needs no build; -f keeps the working directory free of target/.
    # (Maven 3.8 prints bare colour resets even with -q; drop them. pipefail keeps mvn's status.)
    if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" 2>&1 \
        | sed 's/\x1b\[0m//g' >&2; then
        rm -rf "$tmp"
        die "mvn -q -B -Dstyle.color=never -f $POM dependency:copy-dependencies -DoutputDirectory=$tmp failed"
    fi
    [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"; }
    touch "$tmp/.complete"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    rm -rf "$HERE/kafka/target"
    say "$(find "$LIBS" -name '*.jar' | wc -l) jars, $(du -sh "$LIBS" | cut -f1)"
}

# Run a Kafka main class with the cached jars; CLI tools log warnings only, to stderr.
run_tool() {
    [ -f "$LIBS/.complete" ] || die "jars missing: run dev/kafka.sh fetch first"
    local class="$1"; shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/kafka/log4j2-tools.properties" \
        -cp "$LIBS/*" "$class" "$@"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pod_port() {
    echo "${KAFKA_POD_PORT:-19092}"
}

# Whether the pod-facing listener is missing although KAFKA_POD_ADDRESS asks for it.
pod_listener_missing() {
    [ -n "${KAFKA_POD_ADDRESS:-}" ] || return 1
    ! (exec 3<>"/dev/tcp/$KAFKA_POD_ADDRESS/$(pod_port)") 2>/dev/null
}

# PID of our broker when it is alive, else nothing (a stale pid file is ignored).
running_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: it must still be a kafka.Kafka JVM.
    grep -qa 'kafka\.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

current_port() {
    if [ -f "$PORTFILE" ]; then cat "$PORTFILE"; else echo "${KAFKA_PORT:-9092}"; fi
}

tls_port() {
    echo "${KAFKA_TLS_PORT:-$(($(current_port) + 2))}"
}

# The CA, the broker's key and certificate (signed by the CA, for 127.0.0.1 and localhost) and the
# SASL password: made once per state dir, with keytool only.
make_tls() {
    [ -f "$TLS/.complete" ] && return 0
    rm -rf "$TLS"
    mkdir -p "$TLS"
    chmod 700 "$TLS"
    local pass
    pass="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    echo "$pass" >"$TLS/store-password"
    head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$TLS/password"
    chmod 600 "$TLS/store-password" "$TLS/password"
    local kt=(keytool -noprompt -storetype PKCS12 -storepass "$pass")
    {
        "${kt[@]}" -genkeypair -alias ca -dname "CN=onlinebank dev Kafka CA" -ext bc:c \
            -keyalg RSA -keysize 2048 -validity 3650 -keystore "$TLS/ca.p12"
        "${kt[@]}" -exportcert -rfc -alias ca -keystore "$TLS/ca.p12" -file "$TLS/ca.pem"
        "${kt[@]}" -genkeypair -alias broker -dname "CN=127.0.0.1" \
            -keyalg RSA -keysize 2048 -validity 3650 -keystore "$TLS/broker.p12"
        "${kt[@]}" -certreq -alias broker -keystore "$TLS/broker.p12" -file "$TLS/broker.csr"
        "${kt[@]}" -gencert -alias ca -keystore "$TLS/ca.p12" -infile "$TLS/broker.csr" \
            -outfile "$TLS/broker.pem" -rfc -validity 3650 -ext "SAN=IP:127.0.0.1,DNS:localhost"
        "${kt[@]}" -importcert -alias ca -file "$TLS/ca.pem" -keystore "$TLS/broker.p12"
        "${kt[@]}" -importcert -alias broker -file "$TLS/broker.pem" -keystore "$TLS/broker.p12"
    } >"$TLS/keytool.log" 2>&1 || { cat "$TLS/keytool.log" >&2; die "keytool failed"; }
    touch "$TLS/.complete"
    say "made the SASL_SSL listener's CA and certificate in $TLS"
}

write_props() {
    local port="$1" cport="$2" tport="$3"
    local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$tport"
    local advertised="PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$tport"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    if [ -n "${KAFKA_POD_ADDRESS:-}" ]; then
        listeners+=",POD://$KAFKA_POD_ADDRESS:$(pod_port)"
        advertised+=",POD://$KAFKA_POD_ADDRESS:$(pod_port)"
        protocols+=",POD:PLAINTEXT"
    fi
    cat >"$PROPS" <<EOF
# Written by dev/kafka.sh on every start; edit that script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_onlinebank="$(cat "$TLS/password")";
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$(cat "$TLS/store-password")
ssl.key.password=$(cat "$TLS/store-password")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
# Fewer internal partitions than the defaults (50 each): quicker start and restart, same semantics.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
}

cmd_start() {
    local port="${1:-$(current_port)}"
    local cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
    local tport="${KAFKA_TLS_PORT:-$((port + 2))}"
    local pid
    if pid="$(running_pid)"; then
        if [ "$(current_port)" = "$port" ] && port_open "$tport" && pod_listener_missing; then
            say "running (pid $pid) without the listener on $KAFKA_POD_ADDRESS: restarting"
            cmd_stop
            cmd_start "$port"
            return
        fi
        if [ "$(current_port)" = "$port" ] && port_open "$tport"; then
            say "already running (pid $pid) on 127.0.0.1:$port"
            return 0
        fi
        if [ "$(current_port)" = "$port" ]; then
            say "running (pid $pid) without the SASL_SSL listener (started by an older dev/kafka.sh): restarting"
            cmd_stop
            cmd_start "$port"
            return
        fi
        die "already running (pid $pid) on 127.0.0.1:$(current_port); stop it before starting on $port"
    fi
    port_open "$port" && die "127.0.0.1:$port is taken by another process (not started by this script)"
    port_open "$cport" && die "controller port 127.0.0.1:$cport is taken by another process"
    port_open "$tport" && die "SASL_SSL port 127.0.0.1:$tport is taken by another process"

    cmd_fetch
    need_tools
    mkdir -p "$STATE"
    make_tls
    write_props "$port" "$cport" "$tport"
    echo "$port" >"$PORTFILE"

    if [ ! -f "$DATA/meta.properties" ]; then
        # A new log dir: format it once for a single-node static quorum. Later starts reuse it.
        # 16 random bytes in base64url, as Kafka's own ids, and like Kafka never starting with
        # '-' (the format tool would read such an id as an option: a 1-in-64 failed start).
        local cluster_id=-
        while [ "${cluster_id#-}" != "$cluster_id" ]; do
            cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
        done
        say "formatting $DATA (cluster id $cluster_id)"
        run_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >>"$LOG" 2>&1 \
            || { tail -n 30 "$LOG" >&2; die "format failed; see $LOG"; }
    fi

    local offset=0
    [ -f "$LOG" ] && offset="$(stat -c %s "$LOG")"
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several JVM flags.
    nohup java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties" -Dkafka.logs.dir="$STATE" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" </dev/null >>"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    say "started pid $pid on 127.0.0.1:$port (controller $cport), log $LOG; waiting for readiness"

    # Ready = the broker logged that startup finished (it waits to be unfenced first) and the port accepts.
    local deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -c +"$((offset + 1))" "$LOG" | tail -n 40 >&2
            rm -f "$PIDFILE"
            die "broker exited during startup; see $LOG"
        fi
        # (grep without -q reads to the end, so tail never dies of SIGPIPE and trips pipefail.)
        if tail -c +"$((offset + 1))" "$LOG" | grep 'Kafka Server started' >/dev/null && port_open "$port" && port_open "$tport" && ! pod_listener_missing; then
            break
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -c +"$((offset + 1))" "$LOG" | tail -n 40 >&2
            die "broker not ready after ${START_TIMEOUT}s (pid $pid still running); see $LOG"
        fi
        sleep 0.5
    done
    say "ready on 127.0.0.1:$port"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still alive after ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    say "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)" && port_open "$(current_port)"; then
        echo "running pid $pid bootstrap 127.0.0.1:$(current_port) data $DATA"
        return 0
    fi
    echo "not running"
    return 1
}

cmd_reset() {
    cmd_stop
    rm -rf "$STATE"
    say "wiped $STATE"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

sub="${1:-}"
[ "$#" -gt 0 ] && shift
case "$sub" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    restart)
        port="${1:-$(current_port)}"
        cmd_stop
        cmd_start "$port"
        ;;
    status) cmd_status ;;
    bootstrap) echo "127.0.0.1:$(current_port)" ;;
    tls-url)
        [ -f "$TLS/.complete" ] || die "no TLS material yet: run dev/kafka.sh start first"
        echo "kafka://127.0.0.1:$(tls_port)?security.protocol=SASL_SSL&sasl.mechanism=PLAIN&sasl.username=onlinebank&sasl.password=$(cat "$TLS/password")&ssl.ca.location=$TLS/ca.pem"
        ;;
    reset) cmd_reset ;;
    topics) run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$(current_port)" "$@" ;;
    tool)
        [ "$#" -ge 1 ] || die "usage: dev/kafka.sh tool CLASS ARGS..."
        run_tool "$@"
        ;;
    libs) echo "$LIBS" ;;
    version) echo "$KAFKA_VERSION" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
