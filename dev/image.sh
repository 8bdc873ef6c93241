#!/usr/bin/env bash
# The container image, built and tried for real on this machine (no registry needed).
#
#   dev/image.sh install         podman (+ runc) and mmdebstrap from Debian, a containers.conf that
#                                works here (runc, explicit ulimits)
#   dev/image.sh base            debian:bookworm-slim built from Debian's own packages (mmdebstrap)
#                                and imported under the name the Dockerfile's FROM uses
#   dev/image.sh build BINARY    the image from a release binary built here (Dockerfile target
#                                `prebuilt`), tagged onlinebank:local
#   dev/image.sh check           runs the image: `up`, /health/ready, a customer, an account and a
#                                deposit through its gateway; prints the image's size
#   dev/image.sh clean-container removes the test container and its data
#   dev/image.sh clean           ... and the image
#
# Idempotent: each step skips what is already there. Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${ONLINEBANK_IMAGE:-onlinebank:local}"
BASE="docker.io/library/debian:bookworm-slim"
CACHE="${ONLINEBANK_IMAGE_CACHE:-$HOME/.cache/onlinebank/image}"
CONTAINER="onlinebank-image-check"
PORT="${ONLINEBANK_IMAGE_PORT:-18480}"
ADMIN_PORT="${ONLINEBANK_IMAGE_ADMIN_PORT:-18490}"

say() { echo "image.sh: $*"; }

install() {
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
        say "installing podman and mmdebstrap"
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq podman runc mmdebstrap uidmap binutils >/dev/null
    fi
    # crun refuses this machine's cgroup v1 hybrid; without explicit ulimits every container fails
    # with `setrlimit RLIMIT_NOFILE: Operation not permitted`.
    mkdir -p /etc/containers
    if ! grep -q 'onlinebank' /etc/containers/containers.conf 2>/dev/null; then
        cat >/etc/containers/containers.conf <<'EOF'
# written by onlinebank dev/image.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
    fi
    podman --version
}

# The base's revision: a base imported by an older dev/image.sh (without the CA bundle) is replaced.
BASE_REVISION=2

base() {
    if podman image exists "$BASE" \
        && [ "$(podman image inspect --format '{{index .Labels "onlinebank.base"}}' "$BASE" 2>/dev/null)" = "$BASE_REVISION" ]; then
        say "$BASE present"
        return
    fi
    mkdir -p "$CACHE"
    local tarball="$CACHE/debian-bookworm-minbase-r$BASE_REVISION.tar"
    if [ ! -s "$tarball" ]; then
        say "building $BASE from Debian's packages (mmdebstrap, about a minute)"
        mmdebstrap --variant=minbase --include=ca-certificates --format=tar --quiet bookworm "$tarball.part"
        mv "$tarball.part" "$tarball"
    fi
    podman import --quiet --change "LABEL onlinebank.base=$BASE_REVISION" "$tarball" "$BASE" >/dev/null
    say "imported $BASE"
}

build() {
    local binary="${1:?usage: dev/image.sh build PATH-TO-RELEASE-BINARY}"
    local context
    context="$(mktemp -d)"
    strip -o "$context/onlinebank" "$binary"
    cp Dockerfile "$context/Dockerfile"
    podman build --quiet --format docker --target prebuilt \
        --build-arg VERSION="$(git describe --tags --always 2>/dev/null || echo dev)" \
        --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
        -t "$IMAGE" "$context" >/dev/null
    rm -rf "$context"
    say "built $IMAGE"
}

size() {
    local bytes compressed
    bytes="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
    compressed="$(podman save --format docker-archive "$IMAGE" 2>/dev/null | gzip -6 | wc -c)"
    say "$IMAGE: $((bytes / 1024 / 1024)) MB unpacked, $((compressed / 1024 / 1024)) MB compressed (gzip)"
}

wait_for() {
    local url="$1" deadline=$((SECONDS + 60))
    until curl -fs -o /dev/null "$url"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "no answer from $url within 60 s"
            podman logs "$CONTAINER" 2>&1 | tail -n 30
            return 1
        fi
        sleep 0.5
    done
}

check() {
    clean_container
    local data
    data="$(mktemp -d)"
    chown 10001:10001 "$data"
    chmod 0700 "$data"
    echo "$data" >"$CACHE/check-data-dir"
    podman run -d --name "$CONTAINER" --network host --read-only \
        -v "$data:/data" \
        -e ONLINEBANK_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
        "$IMAGE" up --bind 127.0.0.1 --port "$PORT" >/dev/null 2>"$CACHE/run.err" || {
        cat "$CACHE/run.err" >&2
        return 1
    }
    # Without systemd, podman cannot schedule the HEALTHCHECK itself (it says so); it is run below.
    grep -v 'systemd connection' "$CACHE/run.err" >&2 || true
    local base="http://127.0.0.1:$PORT" json='content-type: application/json'
    wait_for "$base/health/ready"
    say "ready: $(curl -fsS "$base/health/ready")"
    curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics"
    curl -fsS -XPOST "$base/api/v1/customers" -H "$json" \
        -d '{"userId":"image@test","name":"Image","password":"image-pw"}' >/dev/null
    local token
    token="$(curl -fsS -XPOST "$base/api/v1/sessions" -H "$json" \
        -d '{"userId":"image@test","password":"image-pw"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')"
    curl -fsS -XPOST "$base/api/v1/requests" -H "authorization: Bearer $token" -H "$json" \
        -d '{"type":"open","accountNo":"9001","amount":100,"password":"image-pw"}' >/dev/null
    local deposit
    deposit="$(curl -fsS -XPOST "$base/api/v1/requests" -H "authorization: Bearer $token" -H "$json" \
        -d '{"type":"deposit","accountNo":"9001","amount":50,"password":"image-pw"}')"
    case "$deposit" in
        *'"balance":150'*) say "deposit through the image: $deposit" ;;
        *) say "unexpected deposit answer: $deposit"; return 1 ;;
    esac
    local health
    health="$(podman healthcheck run "$CONTAINER" >/dev/null 2>&1 && echo healthy || echo unhealthy)"
    say "HEALTHCHECK: $health"
    [ "$health" = healthy ]
    podman stop --time 15 "$CONTAINER" >/dev/null
    say "stopped: exit code $(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
    size
    clean_container
}

clean_container() {
    podman rm -f "$CONTAINER" >/dev/null 2>&1 || true
    if [ -f "$CACHE/check-data-dir" ]; then
        rm -rf "$(cat "$CACHE/check-data-dir")"
        rm -f "$CACHE/check-data-dir"
    fi
}

mkdir -p "$CACHE"
case "${1:-}" in
    install) install ;;
    base) base ;;
    build) build "${2:-}" ;;
    check) check ;;
    clean-container) clean_container ;;
    clean) clean_container; podman rmi -f "$IMAGE" >/dev/null 2>&1 || true ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
