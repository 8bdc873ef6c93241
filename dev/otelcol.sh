#!/usr/bin/env bash
# A real OpenTelemetry Collector for tests: a small custom build (dev/otelcol/main.go, written in the
# shape of what the OpenTelemetry Collector Builder generates) with exactly one receiver, otlp (used
# over HTTP), and one exporter, file (OTLP JSON, one ExportTraceServiceRequest per line). Tests
# start it with a config from `config`, send spans over OTLP/HTTP and read them back from the file.
#
#   dev/otelcol.sh build              build the binary into the cache with the machine's Go; skipped
#                                     when a binary for the current sources exists (idempotent)
#   dev/otelcol.sh path               print the binary's path (exit 1 when it is not built)
#   dev/otelcol.sh config FILE PORT   print a collector config: OTLP/HTTP on 127.0.0.1:PORT, traces
#                                     written to FILE as OTLP JSON lines; no metrics listener
#
# Run it:  "$(dev/otelcol.sh path)" --config CONFIG.yaml   (ready when 127.0.0.1:PORT accepts;
#          POST protobuf or JSON to http://127.0.0.1:PORT/v1/traces; SIGTERM stops it cleanly).
#
# Module versions are pinned in dev/otelcol/go.mod (collector core v0.165.0 / v1.71.0, contrib
# fileexporter v0.165.0); the modules come from the Go module proxy into Go's own module cache.
#
# Environment:
#   ONLINEBANK_CACHE    cache root, default ~/.cache/onlinebank; binaries in ./otelcol under it,
#                       named otelcol-<hash of go.mod, go.sum and main.go>
#   GO                  the Go toolchain (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

SRC="$ROOT/dev/otelcol"
CACHE="${ONLINEBANK_CACHE:-$HOME/.cache/onlinebank}/otelcol"

say() { echo "otelcol.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

find_go() {
    local go="${GO:-}"
    if [ -z "$go" ]; then
        go="$(command -v go || true)"
        [ -n "$go" ] || go=/usr/local/go/bin/go
    fi
    [ -x "$go" ] || die "no Go toolchain (set GO=/path/to/go)"
    echo "$go"
}

# The binary's path: a change to the sources or the pinned modules names a new binary, so a stale
# one is never used and `build` needs no other bookkeeping.
bin_path() {
    local hash
    hash="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"
    echo "$CACHE/otelcol-$hash"
}

cmd_build() {
    local bin go t0
    bin="$(bin_path)"
    if [ -x "$bin" ]; then
        say "built already: $bin"
        return 0
    fi
    go="$(find_go)"
    say "building $bin with $("$go" version)"
    mkdir -p "$CACHE"
    t0=$SECONDS
    # -mod=readonly: go.mod and go.sum are the pins, a build never rewrites them. -buildvcs=false:
    # the repository's git state must not change the binary. GOTOOLCHAIN=local: go.mod names the
    # machine's Go, so no other toolchain is fetched. nice: the machine is shared with cargo builds.
    # Into a .part file first, so an interrupted build never leaves a half-written binary behind.
    (cd "$SRC" && GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 \
        nice -n 10 "$go" build -trimpath -ldflags "-s -w" -o "$bin.part.$$" .) ||
        { rm -f "$bin.part.$$"; die "go build failed"; }
    mv "$bin.part.$$" "$bin"
    say "built in $((SECONDS - t0)) s ($(du -h "$bin" | cut -f1))"
}

cmd_path() {
    local bin
    bin="$(bin_path)"
    [ -x "$bin" ] || { say "not built (dev/otelcol.sh build)"; exit 1; }
    echo "$bin"
}

# A YAML single-quoted scalar: any value is literal there once its quotes are doubled.
yaml_quote() {
    local s="$1"
    printf "'%s'" "${s//\'/\'\'}"
}

cmd_config() {
    [ "$#" -eq 2 ] || die "usage: dev/otelcol.sh config FILE PORT"
    local file="$1" port="$2"
    if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then die "$port: not a port"; fi
    cat <<EOF
# Printed by dev/otelcol.sh config; edit that script, not this file.
receivers:
  otlp:
    protocols:
      # HTTP only (no gRPC listener): POST to http://127.0.0.1:$port/v1/traces.
      http:
        endpoint: 127.0.0.1:$port
exporters:
  file:
    path: $(yaml_quote "$file")
    format: json
    create_directory: true
    # The exporter buffers its writes (default flush every 1s); flush sooner so tests see spans fast.
    flush_interval: 100ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    # No internal metrics: otherwise each collector serves Prometheus on port 8888 and a second
    # one fails to start.
    metrics:
      level: none
    # Warnings and errors only, on stderr.
    logs:
      level: warn
EOF
}

main() {
    case "${1:-}" in
        build) cmd_build ;;
        path) cmd_path ;;
        config) shift; cmd_config "$@" ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

# On one line: bash has read all of it before it runs, so editing this file meanwhile is harmless.
main "$@"; exit
