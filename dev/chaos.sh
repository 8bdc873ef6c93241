#!/usr/bin/env bash
# The chaos test against a real PostgreSQL and a real Kafka broker.
#
#   dev/chaos.sh [ARGS...]
#
# Starts PostgreSQL (dev/postgres.sh) and Kafka (dev/kafka.sh) when they are not running, exports
#   ONLINEBANK_TEST_POSTGRES=$(dev/postgres.sh url)   (postgres://onlinebank@127.0.0.1:55432/postgres)
#   ONLINEBANK_TEST_KAFKA=$(dev/kafka.sh bootstrap)   (127.0.0.1:9092)
# and runs
#   cargo test --release -p onlinebank --test chaos -- --nocapture ARGS...
# (ARGS go to the test binary: a name filter, --test-threads 1, ...). The test prints one summary
# line starting with `chaos:`. Afterwards it stops the services it started itself; services that
# were already running are left running. The exit status is the test's.
#
# Environment: ONLINEBANK_DEV_DIR, PG_PORT, KAFKA_PORT as for dev/postgres.sh and dev/kafka.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."

case "${1:-}" in
    -h | --help | help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
esac

say() { echo "chaos.sh: $*" >&2; }

stop_pg=0
stop_kafka=0
dev/postgres.sh status >/dev/null 2>&1 || stop_pg=1
dev/kafka.sh status >/dev/null 2>&1 || stop_kafka=1

cleanup() {
    local rc=$?
    set +e
    if [ "$stop_kafka" = 1 ]; then dev/kafka.sh stop; fi
    if [ "$stop_pg" = 1 ]; then dev/postgres.sh stop; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
dev/postgres.sh install
dev/postgres.sh start
dev/kafka.sh fetch
dev/kafka.sh start
say "PostgreSQL and Kafka ready after $((SECONDS - t0))s"

ONLINEBANK_TEST_POSTGRES="$(dev/postgres.sh url)"
ONLINEBANK_TEST_KAFKA="$(dev/kafka.sh bootstrap)"
export ONLINEBANK_TEST_POSTGRES ONLINEBANK_TEST_KAFKA
say "ONLINEBANK_TEST_POSTGRES=$ONLINEBANK_TEST_POSTGRES ONLINEBANK_TEST_KAFKA=$ONLINEBANK_TEST_KAFKA"

cargo test --release -p onlinebank --test chaos -- --nocapture "$@"
