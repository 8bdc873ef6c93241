#!/usr/bin/env bash
# The API's contract checked against the bank itself: schemathesis fuzzes every operation of
# GET /api/v1/openapi.json on a running `onlinebank up` and fails on any answer the document
# does not describe (status, content type, body schema) and on any 5xx the document does not name.
#
#   dev/schemathesis.sh BIN        BIN: the onlinebank binary (e.g. target/debug/onlinebank)
#
# It starts `BIN up` on free ports with a temporary data directory, signs up and logs in a
# customer with one account (so the fuzzed calls carry a real bearer token and reach real data),
# runs `st run` with that customer's `Authorization: Bearer` token, and stops the bank on exit
# whatever happens. The token comes from `POST /api/v1/sessions` and is fetched again after a 401
# (schemathesis itself calls `DELETE /api/v1/sessions/current`, which ends the session); the legacy
# routes may also get the customer's HTTP Basic credentials.
#
# Needs python3 (python3-venv is installed with apt-get when missing) and curl.
#
# Environment:
#   SCHEMATHESIS_VENV          the venv, default ${XDG_CACHE_HOME:-$HOME/.cache}/onlinebank/schemathesis
#                              (created, with the pinned schemathesis, when it lacks that version)
#   SCHEMATHESIS_MAX_EXAMPLES  examples per operation, default 50
#   SCHEMATHESIS_SEED          hypothesis seed (default: a new one, printed by schemathesis)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/onlinebank/schemathesis}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
PASSWORD=schemathesis-1234

say() { echo "schemathesis.sh: $*" >&2; }
die() { say "$*"; exit 1; }

[ $# -eq 1 ] || die "usage: dev/schemathesis.sh BIN (the onlinebank binary)"
BIN="$1"
[ -x "$BIN" ] || die "$BIN is not an executable"
started=$SECONDS

# The pinned schemathesis in its own venv; nothing is installed when it is already there.
ensure_schemathesis() {
    if "$VENV/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
        return 0
    fi
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        say "installing python3-venv with apt-get"
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq python3-venv >/dev/null
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

work="$(mktemp -d)"
bank_pid=
finish() {
    local status=$?
    if [ -n "$bank_pid" ]; then
        kill "$bank_pid" 2>/dev/null || true
        wait "$bank_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/bank.log" ]; then
        say "the bank's last log lines:"
        tail -n 40 "$work/bank.log" >&2 || true
    fi
    rm -rf "$work"
    say "took $((SECONDS - started)) s"
    exit "$status"
}
trap finish EXIT

# Starts the bank and sets URL to the gateway's once it printed that it is ready.
start_bank() {
    "$BIN" up --data-dir "$work/data" --port 0 >"$work/bank.out" 2>"$work/bank.log" &
    bank_pid=$!
    local waited=0
    URL=
    while [ -z "$URL" ]; do
        kill -0 "$bank_pid" 2>/dev/null || die "the bank exited while starting"
        [ "$waited" -lt 600 ] || die "the bank was not ready within 60 s"
        URL="$(sed -n 's/^onlinebank ready at \(http[^ ]*\).*/\1/p' "$work/bank.out" | head -n 1)"
        URL="${URL%/}"
        sleep 0.1
        waited=$((waited + 1))
    done
    say "bank ready at $URL"
}

# POSTs JSON to the bank; prints the answer's body, fails on a status other than 2xx.
post() {
    local path="$1" body="$2"
    shift 2
    curl --silent --show-error --fail-with-body --max-time 30 -X POST \
        -H 'content-type: application/json' "$@" --data "$body" "$URL$path"
}

# One field of a JSON object on stdin.
field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

USER_ID="schemathesis@example.com"

# A customer with one open account (the token opens it).
customer() {
    local user="$USER_ID" token
    post /api/v1/customers "{\"userId\":\"$user\",\"name\":\"Schemathesis\",\"password\":\"$PASSWORD\"}" >/dev/null
    token="$(post /api/v1/sessions "{\"userId\":\"$user\",\"password\":\"$PASSWORD\"}" | field token)"
    local account
    account="$(post /api/v1/requests "{\"type\":\"open\",\"password\":\"$PASSWORD\",\"amount\":10000}" \
        -H "authorization: Bearer $token" | field accountNo)"
    say "customer $user logged in, account $account opened"
}

# schemathesis's configuration: the customer's bearer token, logged in again after a 401, and its
# Basic credentials for the legacy routes that take them.
write_config() {
    cat >"$work/schemathesis.toml" <<EOF
[auth.dynamic.openapi.bearer]
path = "/api/v1/sessions"
payload = { userId = "$USER_ID", password = "$PASSWORD" }
extract_selector = "/token"
retry_on = [401]

[auth.openapi.basic]
username = "$USER_ID"
password = "$PASSWORD"
EOF
}

ensure_schemathesis
"$VENV/bin/st" --version
write_config
start_bank
customer
seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
    seed=(--seed "$SCHEMATHESIS_SEED")
fi
# From the temporary directory: schemathesis keeps its cache (.schemathesis/) in the current one.
cd "$work"
"$VENV/bin/st" --no-color --config-file "$work/schemathesis.toml" run "$URL/api/v1/openapi.json" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 30 \
    --generation-database none \
    "${seed[@]}"
