#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, built from source (no registry is reachable here).
#
#   dev/k8s.sh build            Kubernetes v1.34.4 (kube-apiserver, kube-controller-manager,
#                               kube-scheduler, kubelet, kube-proxy, kubectl), CoreDNS, metrics-server
#                               and a pause binary, built with the machine's Go into the cache;
#                               skips what is built already
#   dev/k8s.sh up               build, install what it needs from apt, start etcd, the control plane,
#                               containerd, kubelet, kube-proxy, CoreDNS and metrics-server; waits
#                               until the node is Ready and both add-ons are available
#   dev/k8s.sh load IMAGE...    podman save IMAGE | ctr -n k8s.io images import (into the node)
#   dev/k8s.sh status           what runs (exit 0 when every process is alive)
#   dev/k8s.sh kubeconfig       the kubeconfig's path (export KUBECONFIG="$(dev/k8s.sh kubeconfig)")
#   dev/k8s.sh kubectl ARGS...  the built kubectl with that kubeconfig
#   dev/k8s.sh node-ip          the node's address on the launcher's bridge (pods reach the node there)
#   dev/k8s.sh pid NS POD [C]   the PID on the node of a pod's container (kill -STOP it to hang it)
#   dev/k8s.sh down             stops what `up` started (by recorded PID) and removes what it made
#                               (bridge, iptables chains, mounts, cgroups, containerd state); idempotent
#
# Everything stays inside this machine: etcd, the schedulers' and kubelet's health ports and
# kube-proxy's listen on 127.0.0.1; the API server and kubelet listen on the node's address on a bridge
# this script makes (its own private subnet), where the pods live too; NodePorts open on 127.0.0.1 and
# that address only. Nothing is forwarded between the bridge and any other interface (no NAT to
# the outside), and CoreDNS has no upstream: pods reach each other, Services and the node only.
#
# Environment:
#   ONLINEBANK_K8S_CACHE        binaries, Go module and build caches (default ~/.cache/onlinebank/k8s)
#   ONLINEBANK_K8S_DIR          state: PIDs, logs, certificates, containerd, records (/tmp/onlinebank-k8s)
#   ONLINEBANK_K8S_POD_CIDR     the bridge's subnet, a /24 (default 10.233.0.0/24; node = .1)
#   ONLINEBANK_K8S_SERVICE_CIDR Services' cluster IPs, a /24 (default 10.234.0.0/24; DNS = .10)
#   ONLINEBANK_K8S_BRIDGE       the bridge's name (default onlbk0)
#   ONLINEBANK_K8S_API_PORT     the API server's port on the node address (default 16443)
#   ONLINEBANK_K8S_WAIT         seconds each wait in `up` may take (default 180)
#   GO                          the Go toolchain (default: go on PATH, else /usr/local/go/bin/go)

# Functions run through `timed` and `wait_for` look unreachable to shellcheck.
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

K8S_VERSION=v1.34.4
COREDNS_VERSION=v1.12.1
METRICS_SERVER_VERSION=v0.8.0
PAUSE_TAG=localhost/onlinebank-k8s/pause:1
COREDNS_IMAGE="localhost/onlinebank-k8s/coredns:$COREDNS_VERSION"
METRICS_SERVER_IMAGE="localhost/onlinebank-k8s/metrics-server:$METRICS_SERVER_VERSION"

CACHE="${ONLINEBANK_K8S_CACHE:-$HOME/.cache/onlinebank/k8s}"
STATE="${ONLINEBANK_K8S_DIR:-/tmp/onlinebank-k8s}"
POD_CIDR="${ONLINEBANK_K8S_POD_CIDR:-10.233.0.0/24}"
SERVICE_CIDR="${ONLINEBANK_K8S_SERVICE_CIDR:-10.234.0.0/24}"
BRIDGE="${ONLINEBANK_K8S_BRIDGE:-onlbk0}"
API_PORT="${ONLINEBANK_K8S_API_PORT:-16443}"
WAIT="${ONLINEBANK_K8S_WAIT:-180}"
ETCD_PORT=23790
ETCD_PEER_PORT=23800

BIN="$CACHE/$K8S_VERSION/bin"
KUBECTL="$BIN/kubectl"
KUBECONFIG_FILE="$STATE/admin.kubeconfig"
PKI="$STATE/pki"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
REC="$STATE/records"
CONTAINERD_SOCK="$STATE/containerd/containerd.sock"

say() { echo "k8s.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# 10.233.0.0/24 -> 10.233.0 ; the node is .1 on the bridge.
prefix24() {
    local cidr="$1"
    [[ "$cidr" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die "$cidr: a x.y.z.0/24 subnet is expected"
    echo "${BASH_REMATCH[1]}"
}
NODE_IP="$(prefix24 "$POD_CIDR").1"
API_SERVICE_IP="$(prefix24 "$SERVICE_CIDR").1"
DNS_SERVICE_IP="$(prefix24 "$SERVICE_CIDR").10"

# ---------------------------------------------------------------------------------------------
# build

find_go() {
    local go="${GO:-}"
    if [ -z "$go" ]; then
        go="$(command -v go || true)"
        [ -n "$go" ] || go=/usr/local/go/bin/go
    fi
    [ -x "$go" ] || die "no Go toolchain (set GO=/path/to/go); Debian's golang is too old"
    local v
    v="$("$go" env GOVERSION)"
    v="${v#go}"
    local major="${v%%.*}" rest="${v#*.}"
    local minor="${rest%%.*}"
    if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 24 ]; }; then
        die "$go is go$v; Kubernetes $K8S_VERSION needs Go 1.24 or newer"
    fi
    echo "$go"
}

go_env() {
    export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache" GOFLAGS=-modcacherw
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOOS=linux GOARCH=amd64
}

timed() {
    local what="$1" t0=$SECONDS
    shift
    "$@"
    say "$what: $((SECONDS - t0)) s"
}

build_kube_one() {
    local go="$1" name="$2" src="$CACHE/src/kube"
    if [ -x "$BIN/$name" ]; then
        say "$name $K8S_VERSION: built already"
        return
    fi
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local ldflags="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    say "building $name $K8S_VERSION"
    (cd "$src" && nice -n 10 "$go" build -trimpath -ldflags "$ldflags" -o "$BIN/$name.part" "k8s.io/kubernetes/cmd/$name")
    mv "$BIN/$name.part" "$BIN/$name"
}

build_go_install() {
    local go="$1" name="$2" pkg="$3" dir="$4"
    if [ -x "$dir/$name" ]; then
        say "$name: built already"
        return
    fi
    say "building $pkg"
    mkdir -p "$dir.part"
    GOBIN="$dir.part" nice -n 10 "$go" install -trimpath -ldflags "-s -w" "$pkg"
    mkdir -p "$dir"
    mv "$dir.part/$name" "$dir/$name"
    rmdir "$dir.part"
}

build_pause() {
    local go="$1"
    if [ -x "$CACHE/pause/pause" ]; then
        say "pause: built already"
        return
    fi
    mkdir -p "$CACHE/pause"
    (cd "$ROOT/dev/k8s/pause" && nice -n 10 "$go" build -trimpath -ldflags "-s -w" -o "$CACHE/pause/pause.part" .)
    mv "$CACHE/pause/pause.part" "$CACHE/pause/pause"
}

cmd_build() {
    local go t0=$SECONDS
    go="$(find_go)"
    go_env
    say "using $("$go" version) ($go); cache $CACHE"
    mkdir -p "$BIN" "$CACHE/src/kube"
    # The wrapper module (go.mod, go.sum pinned in dev/k8s/kube) is built from a copy in the cache.
    cp "$ROOT/dev/k8s/kube/go.mod" "$ROOT/dev/k8s/kube/go.sum" "$ROOT/dev/k8s/kube/tools.go" "$CACHE/src/kube/"
    local name
    for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
        timed "$name" build_kube_one "$go" "$name"
    done
    timed "coredns $COREDNS_VERSION" build_go_install "$go" coredns \
        "github.com/coredns/coredns@$COREDNS_VERSION" "$CACHE/coredns-$COREDNS_VERSION"
    timed "metrics-server $METRICS_SERVER_VERSION" build_go_install "$go" metrics-server \
        "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" "$CACHE/metrics-server-$METRICS_SERVER_VERSION"
    timed "pause" build_pause "$go"
    say "build: $((SECONDS - t0)) s in all"
}


# ---------------------------------------------------------------------------------------------
# images without a registry: a docker-archive made by hand from one static binary

# make_image TAR NAME BINARY ENTRYPOINT...: an image whose one layer holds BINARY at /ENTRYPOINT[0].
make_image() {
    local out="$1" name="$2" binary="$3"
    shift 3
    [ -s "$out" ] && return 0
    local tmp
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/rootfs/tmp" "$tmp/rootfs/etc"
    chmod 1777 "$tmp/rootfs/tmp"
    cp "$binary" "$tmp/rootfs/$(basename "$1")"
    printf 'root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n' >"$tmp/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/rootfs/etc/group"
    tar -C "$tmp/rootfs" --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$tmp/layer.tar" .
    local diff_id entry="" arg
    diff_id="$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
    for arg in "$@"; do entry+="${entry:+,}\"$arg\""; done
    printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":[%s],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$entry" "$diff_id" >"$tmp/config.json"
    local config_id
    config_id="$(sha256sum "$tmp/config.json" | cut -d' ' -f1)"
    mv "$tmp/config.json" "$tmp/$config_id.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_id" "$name" >"$tmp/manifest.json"
    tar -C "$tmp" -cf "$out.part" manifest.json "$config_id.json" layer.tar
    mv "$out.part" "$out"
    rm -rf "$tmp"
}

node_images() {
    mkdir -p "$CACHE/images"
    make_image "$CACHE/images/pause-1.tar" "$PAUSE_TAG" "$CACHE/pause/pause" /pause
    make_image "$CACHE/images/coredns-$COREDNS_VERSION.tar" "$COREDNS_IMAGE" \
        "$CACHE/coredns-$COREDNS_VERSION/coredns" /coredns
    make_image "$CACHE/images/metrics-server-$METRICS_SERVER_VERSION.tar" "$METRICS_SERVER_IMAGE" \
        "$CACHE/metrics-server-$METRICS_SERVER_VERSION/metrics-server" /metrics-server
}

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------
# helpers for up

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it starts kubelet, containerd, makes a bridge)"; }

install_packages() {
    local missing=() pkg
    # package:command that shows it is there
    for pkg in etcd-server:etcd containerd:containerd runc:runc containernetworking-plugins:/usr/lib/cni/bridge \
        iptables:iptables conntrack:conntrack openssl:openssl curl:curl iproute2:ip util-linux:nsenter; do
        if ! command -v "${pkg#*:}" >/dev/null 2>&1; then missing+=("${pkg%%:*}"); fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing from apt: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# start NAME BINARY ARGS...: runs it in its own session, logs to logs/NAME.log, records "PID BINARY".
start() {
    local name="$1" binary="$2"
    shift 2
    setsid "$binary" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    local pid=$! i
    echo "$pid $binary" >"$PIDS/$name"
    # setsid execs the binary: until then /proc/PID/exe is setsid's.
    for i in $(seq 1 50); do
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$binary" ] && break
        [ -d "/proc/$pid" ] || break
        sleep 0.1
    done
    say "started $name (pid $pid)"
}

# Alive and still the recorded binary (a reused PID is not ours).
pid_of() {
    local name="$1" pid binary
    [ -f "$PIDS/$name" ] || return 1
    read -r pid binary <"$PIDS/$name"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$binary" ] || return 1
    echo "$pid"
}

# wait_for WHAT SECONDS LOGNAME COMMAND...: polls COMMAND every second.
wait_for() {
    local what="$1" limit="$2" log="$3" t0=$SECONDS
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge "$limit" ]; then
            say "error: $what: not within $limit s"
            if [ -n "$log" ] && [ -f "$LOGS/$log.log" ]; then
                say "last lines of $LOGS/$log.log:"
                tail -n 25 "$LOGS/$log.log" >&2
            fi
            return 1
        fi
        if [ -n "$log" ] && [ -f "$PIDS/$log" ] && ! pid_of "$log" >/dev/null; then
            say "error: $log exited while waiting for $what; last lines of $LOGS/$log.log:"
            tail -n 25 "$LOGS/$log.log" >&2
            return 1
        fi
        sleep 1
    done
    say "$what after $((SECONDS - UP_T0)) s"
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# ---------------------------------------------------------------------------------------------
# certificates (openssl): the cluster CA and the front-proxy CA (aggregation layer)

# cert NAME CN O CA [SAN]: key + certificate signed by CA (client and server usage).
cert() {
    local name="$1" cn="$2" org="$3" ca="$4" san="${5:-}"
    local subj="/CN=$cn"
    [ -n "$org" ] && subj="/O=$org$subj"
    openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
    local ca
    for ca in ca front-proxy-ca; do
        openssl genrsa -out "$PKI/$ca.key" 2048 2>/dev/null
        openssl req -x509 -new -key "$PKI/$ca.key" -subj "/CN=onlinebank-k8s-$ca" -days 30 -sha256 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -out "$PKI/$ca.crt" 2>/dev/null
    done
    cert apiserver kube-apiserver "" ca \
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ca
    cert admin kubernetes-admin system:masters ca
    cert controller-manager system:kube-controller-manager "" ca
    cert scheduler system:kube-scheduler "" ca
    cert kube-proxy system:kube-proxy "" ca
    cert kubelet-client system:node:localhost system:nodes ca
    cert kubelet localhost "" ca "DNS:localhost,IP:$NODE_IP,IP:127.0.0.1"
    cert front-proxy-client front-proxy-client "" front-proxy-ca
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig FILE CERTNAME
kubeconfig() {
    local file="$1" name="$2"
    "$KUBECTL" config --kubeconfig "$file" set-cluster onlinebank --server "https://$NODE_IP:$API_PORT" \
        --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
    "$KUBECTL" config --kubeconfig "$file" set-credentials "$name" --client-certificate "$PKI/$name.crt" \
        --client-key "$PKI/$name.key" --embed-certs >/dev/null
    "$KUBECTL" config --kubeconfig "$file" set-context onlinebank --cluster onlinebank --user "$name" >/dev/null
    "$KUBECTL" config --kubeconfig "$file" use-context onlinebank >/dev/null
    chmod 0600 "$file"
}

# ---------------------------------------------------------------------------------------------
# records: what existed before `up`, so that `down` removes exactly what `up` added

IPT_TABLES="filter nat mangle raw"
SYSCTLS="net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.netfilter.nf_conntrack_max"
# Paths kubelet, containerd and the CNI plugins create outside the state dir.
HOST_PATHS="/var/lib/kubelet /var/log/containers /var/lib/cni /run/containerd /run/netns"

# chains IPTABLES: "table chain" for every chain
chains() {
    local ipt="$1" t
    for t in $IPT_TABLES; do
        "$ipt-save" -t "$t" 2>/dev/null | sed -n "s/^:\([^ ]*\) .*/$t \1/p"
    done
}

mounts_now() { awk '{print $5}' /proc/self/mountinfo | sort -u; }

record_before() {
    mkdir -p "$REC"
    local ipt p s
    for ipt in iptables ip6tables; do chains "$ipt" >"$REC/$ipt-chains.before"; done
    mounts_now >"$REC/mounts.before"
    : >"$REC/paths-created"
    for p in $HOST_PATHS; do [ -e "$p" ] || echo "$p" >>"$REC/paths-created"; done
    for p in /var/lib/kubelet /run/netns; do
        if [ -d "$p" ]; then find "$p" -mindepth 1 -maxdepth 1 | sort >"$REC/$(basename "$p").entries-before"; fi
    done
    : >"$REC/sysctls.before"
    for s in $SYSCTLS; do
        if [ -e "/proc/sys/${s//.//}" ]; then echo "$s $(sysctl -n "$s")" >>"$REC/sysctls.before"; fi
    done
    : >"$REC/cgroups-created"
    for p in /sys/fs/cgroup/*/; do
        [ -d "${p}kubepods" ] || echo "${p}kubepods" >>"$REC/cgroups-created"
    done
}

# ---------------------------------------------------------------------------------------------
# network: the launcher's bridge and its firewall chain

setup_network() {
    local prefix
    prefix="$(prefix24 "$POD_CIDR")"
    if ip -4 -o addr | grep -q " inet $prefix\."; then die "$POD_CIDR is in use on this machine (ip addr); set ONLINEBANK_K8S_POD_CIDR"; fi
    if ip -4 route | grep -q "^$prefix\."; then die "$POD_CIDR is routed already (ip route); set ONLINEBANK_K8S_POD_CIDR"; fi
    if ip -4 route | grep -q "^$(prefix24 "$SERVICE_CIDR")\."; then die "$SERVICE_CIDR is routed already; set ONLINEBANK_K8S_SERVICE_CIDR"; fi
    if ip link show "$BRIDGE" >/dev/null 2>&1; then die "a link named $BRIDGE exists already; set ONLINEBANK_K8S_BRIDGE"; fi
    ip link add name "$BRIDGE" type bridge
    echo "$BRIDGE" >"$REC/bridge"
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The node's own connections to cluster IPs leave through the bridge with the node's address
    # (not through the default route); an address nobody serves goes nowhere.
    ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
    sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
    # Pods talk to each other, to Services and to the node's address on the bridge, nothing else:
    # nothing is forwarded between the bridge and any other interface.
    iptables -N ONLBK-FORWARD
    iptables -A ONLBK-FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    iptables -A ONLBK-FORWARD -i "$BRIDGE" -j DROP
    iptables -A ONLBK-FORWARD -o "$BRIDGE" -j DROP
    iptables -I FORWARD 1 -j ONLBK-FORWARD
    iptables -N ONLBK-INPUT
    iptables -A ONLBK-INPUT -i "$BRIDGE" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    iptables -A ONLBK-INPUT -i "$BRIDGE" -d "$NODE_IP" -j ACCEPT
    iptables -A ONLBK-INPUT -i "$BRIDGE" -m addrtype --dst-type LOCAL -j DROP
    iptables -I INPUT 1 -j ONLBK-INPUT
    mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
    cat >"$STATE/cni/net.d/10-onlbk.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "onlbk",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "dataDir": "$STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---------------------------------------------------------------------------------------------
# the components

start_etcd() {
    mkdir -p "$STATE/etcd"
    chmod 0700 "$STATE/etcd"
    start etcd "$(command -v etcd)" --name onlbk --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "onlbk=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
        --quota-backend-bytes 2147483648 --log-level warn
    wait_for "etcd" "$WAIT" etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
    start kube-apiserver "$BIN/kube-apiserver" \
        --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
        --cert-dir "$PKI/generated" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --allow-privileged=true --profiling=false --anonymous-auth=true \
        --client-ca-file "$PKI/ca.crt" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types InternalIP,Hostname \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
        --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --enable-aggregator-routing=true \
        --event-ttl 1h
    wait_for "kube-apiserver ready" "$WAIT" kube-apiserver \
        curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$NODE_IP:$API_PORT/readyz"
}

start_controllers() {
    kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
    kubeconfig "$STATE/scheduler.kubeconfig" scheduler
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false --profiling=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
        --horizontal-pod-autoscaler-sync-period 5s \
        --horizontal-pod-autoscaler-downscale-stabilization 15s \
        --horizontal-pod-autoscaler-initial-readiness-delay 10s \
        --horizontal-pod-autoscaler-cpu-initialization-period 30s
    start kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_containerd() {
    mkdir -p "$STATE/containerd"
    cat >"$STATE/containerd/config.toml" <<EOF
# written by dev/k8s.sh: a containerd of its own (socket, root and state in $STATE/containerd)
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_TAG"
  # Without it pod sandboxes fail here with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
    start containerd "$(command -v containerd)" --config "$STATE/containerd/config.toml"
    wait_for "containerd" "$WAIT" containerd ctr_ version
    local tar
    for tar in "$CACHE/images/pause-1.tar" "$CACHE/images/coredns-$COREDNS_VERSION.tar" \
        "$CACHE/images/metrics-server-$METRICS_SERVER_VERSION.tar"; do
        ctr_ images import "$tar" >/dev/null
    done
    say "imported the pause, CoreDNS and metrics-server images"
}

start_kubelet() {
    kubeconfig "$STATE/kubelet.kubeconfig" kubelet-client
    mkdir -p "$STATE/pod-logs"
    cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $STATE/pod-logs
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
clusterDomain: cluster.local
clusterDNS: ["$DNS_SERVICE_IP"]
# No resolv.conf of the machine in pods: names outside the cluster are not resolved.
resolvConf: ""
maxPods: 110
serializeImagePulls: false
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Eviction only when the disk is really full: a percentage of a large shared disk (1 % of 250 GB)
# is gigabytes that a build next to the cluster may well take, and disk pressure taints the node,
# so that no pod is scheduled at all. Absolute, small thresholds instead.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "256Mi"
  nodefs.inodesFree: "1%"
  imagefs.available: "256Mi"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 10s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
    start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
        --hostname-override localhost --node-ip "$NODE_IP" --root-dir /var/lib/kubelet
}

start_kube_proxy() {
    kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
hostnameOverride: localhost
mode: iptables
clusterCIDR: $POD_CIDR
# NodePorts on the loopback and the node's bridge address only (never the machine's other interfaces).
nodePortAddresses: ["127.0.0.1/32", "$NODE_IP/32"]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  localhostNodePorts: true
  minSyncPeriod: 1s
  syncPeriod: 30s
# Leave the machine's conntrack settings as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
    start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
}

make_volumes() {
    local i
    for i in $(seq -w 1 16); do
        mkdir -p "$STATE/volumes/pv-$i"
        cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: onlbk-local-$i
spec:
  capacity:
    storage: 10Gi
  accessModes: ["ReadWriteOnce"]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local:
    path: $STATE/volumes/pv-$i
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - key: kubernetes.io/hostname
              operator: In
              values: ["localhost"]
EOF
    done
}

apply_addons() {
    sed -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|" -e "s|@METRICS_SERVER_IMAGE@|$METRICS_SERVER_IMAGE|" \
        -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|" "$ROOT/dev/k8s/addons.yaml" | kc apply -f - >/dev/null
    make_volumes | kc apply -f - >/dev/null
    say "applied CoreDNS, metrics-server, the StorageClass \`local\` (default) and 16 local volumes"
}

node_ready() {
    [ "$(kc get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

deployment_available() {
    [ "$(kc -n "$1" get deployment "$2" -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}')" = True ]
}

apiservice_available() {
    [ "$(kc get apiservice v1beta1.metrics.k8s.io -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}')" = True ]
}

dns_works() {
    # CoreDNS answers for the API server's Service name (from the node, through its cluster IP).
    local ip
    ip="$(getent_dns kubernetes.default.svc.cluster.local)"
    [ "$ip" = "$API_SERVICE_IP" ]
}

# A tiny DNS A query over UDP with bash only would be long; python3 is on the machine.
getent_dns() {
    python3 - "$1" "$DNS_SERVICE_IP" <<'EOF'
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, (server, 53))
r = s.recv(512)
an = struct.unpack(">H", r[6:8])[0]


def skip_name(i):
    while r[i]:
        if r[i] & 0xC0 == 0xC0:
            return i + 2
        i += r[i] + 1
    return i + 1


i = skip_name(12) + 4
for _ in range(an):
    i = skip_name(i)
    t, _, _, l = struct.unpack(">HHIH", r[i:i + 10])
    i += 10
    if t == 1 and l == 4:
        print(socket.inet_ntoa(r[i:i + 4]))
        break
    i += l
EOF
}

top_works() { kc top node localhost; }

# ---------------------------------------------------------------------------------------------
# commands

COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy"

all_alive() {
    local c
    for c in $COMPONENTS; do pid_of "$c" >/dev/null || return 1; done
}

cmd_up() {
    need_root
    UP_T0=$SECONDS
    if [ -d "$PIDS" ]; then
        if all_alive && node_ready 2>/dev/null; then
            say "up already: the add-ons are applied again and waited for"
            wait_addons
            return 0
        fi
        say "a partial cluster is recorded in $STATE: taking it down first"
        cmd_down
    fi
    cmd_build
    install_packages
    UP_T0=$SECONDS
    local port
    for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" 10248 10249 10250 10256 10257 10259; do
        if [ -n "$(ss -Hltn "sport = :$port")" ]; then die "port $port is in use (ss -ltnp sport = :$port)"; fi
    done
    trap up_failed EXIT
    node_images
    mkdir -p "$STATE" "$LOGS" "$PIDS" "$REC"
    record_before
    echo "$POD_CIDR $SERVICE_CIDR $NODE_IP $API_PORT" >"$REC/network"
    setup_network
    make_pki
    kubeconfig "$KUBECONFIG_FILE" admin
    start_etcd
    start_apiserver
    start_controllers
    start_containerd
    start_kubelet
    start_kube_proxy
    wait_for "node localhost registered" "$WAIT" kubelet kc get node localhost
    wait_for "node Ready" "$WAIT" kubelet node_ready
    wait_addons
    trap - EXIT
    say "up in $((SECONDS - UP_T0)) s; export KUBECONFIG=$KUBECONFIG_FILE (or dev/k8s.sh kubectl ...)"
}

up_failed() {
    local rc=$?
    [ "$rc" -eq 0 ] || say "up failed (exit $rc); logs: $LOGS; \`dev/k8s.sh down\` removes what it started"
}

wait_addons() {
    apply_addons
    wait_for "CoreDNS available" "$WAIT" "" deployment_available kube-system coredns
    wait_for "cluster DNS answers" "$WAIT" "" dns_works
    wait_for "metrics-server available" "$WAIT" "" deployment_available kube-system metrics-server
    wait_for "metrics API (aggregation layer) available" "$WAIT" "" apiservice_available
    wait_for "kubectl top node" "$WAIT" "" top_works
}

cmd_load() {
    need_root
    [ "$#" -gt 0 ] || die "usage: dev/k8s.sh load IMAGE..."
    pid_of containerd >/dev/null || die "the cluster is not up (dev/k8s.sh up)"
    command -v podman >/dev/null || die "podman is missing (dev/image.sh install)"
    local image t0
    for image in "$@"; do
        t0=$SECONDS
        podman save --format docker-archive "$image" | ctr_ images import - >/dev/null
        say "loaded $image into the node ($((SECONDS - t0)) s)"
    done
    ctr_ images ls -q | grep -v '^sha256:' | sed 's/^/  /' >&2
}

# The node-side PID of a pod's container (for faults from the node: kill -STOP, kill -KILL).
cmd_pid() {
    local ns="${1:?usage: dev/k8s.sh pid NAMESPACE POD [CONTAINER]}" pod="${2:?usage: dev/k8s.sh pid NAMESPACE POD [CONTAINER]}"
    local container="${3:-}" id filter
    if [ -n "$container" ]; then
        filter="{.status.containerStatuses[?(@.name==\"$container\")].containerID}"
    else
        filter='{.status.containerStatuses[0].containerID}'
    fi
    id="$(kc -n "$ns" get pod "$pod" -o "jsonpath=$filter")"
    id="${id#containerd://}"
    [ -n "$id" ] || die "$ns/$pod: no running container"
    ctr_ tasks ls | awk -v id="$id" '$1 == id && $3 == "RUNNING" {print $2; found=1} END {exit !found}' ||
        die "$ns/$pod: container $id has no running task"
}

cmd_status() {
    local c pid rc=0
    if [ ! -d "$PIDS" ]; then
        echo "down (no state in $STATE)"
        return 3
    fi
    for c in $COMPONENTS; do
        if pid="$(pid_of "$c")"; then echo "$c: running (pid $pid)"; else echo "$c: NOT running"; rc=1; fi
    done
    [ -f "$REC/bridge" ] && echo "bridge: $(cat "$REC/bridge") $NODE_IP/24 (pods $POD_CIDR, services $SERVICE_CIDR)"
    echo "kubeconfig: $KUBECONFIG_FILE"
    if pid_of kube-apiserver >/dev/null; then
        kc get nodes -o wide 2>&1 || true
        kc get pods -A -o wide 2>&1 || true
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# down

stop_pid() {
    local name="$1" pid i
    pid="$(pid_of "$name")" || { rm -f "$PIDS/$name"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do
        [ -d "/proc/$pid" ] || break
        [ "$i" -eq 30 ] && kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    done
    rm -f "$PIDS/$name"
    say "stopped $name (pid $pid)"
}

remove_pods() {
    if ! pid_of kube-apiserver >/dev/null || ! pid_of kubelet >/dev/null; then return 0; fi
    # Nothing recreates them once the controllers are gone; kubelet tears each sandbox down (CNI DEL).
    kc delete pods --all-namespaces --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 60); do
        [ -z "$(ctr_ tasks ls -q 2>/dev/null)" ] && { say "kubelet removed every pod"; return 0; }
        sleep 1
    done
    say "some pods are still running after 60 s; removing their containers with ctr"
}

remove_containers() {
    pid_of containerd >/dev/null || return 0
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do
        ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
}

# Shims of this containerd (their command line names its socket, a path in the state dir).
kill_shims() {
    local p
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $CONTAINERD_SOCK "; then
            kill -KILL "${p#/proc/}" 2>/dev/null && say "killed a leftover shim (pid ${p#/proc/})"
        fi
    done
    return 0
}

# The mounts that appeared since `up` under the paths it uses, deepest first.
unmount_ours() {
    [ -f "$REC/mounts.before" ] || return 0
    local m n=0
    while read -r m; do
        case "$m" in
            /var/lib/kubelet | /var/lib/kubelet/* | "$STATE"/* | /run/netns | /run/netns/* | /run/containerd/*) ;;
            *) continue ;;
        esac
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
        say "unmounted $m"
        n=$((n + 1))
    done < <(mounts_now | comm -13 "$REC/mounts.before" - | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
}

# The iptables chains that appeared since `up` (KUBE-*, CNI-*, ONLBK-*): the rules that jump to
# them, then the chains themselves.
remove_chains() {
    local ipt t chain script
    for ipt in iptables ip6tables; do
        [ -f "$REC/$ipt-chains.before" ] || continue
        local ours
        ours="$(chains "$ipt" | sort | comm -13 <(sort "$REC/$ipt-chains.before") - | grep -E ' (KUBE-|CNI-|ONLBK-)' || true)"
        [ -n "$ours" ] || continue
        while read -r t chain; do echo "$ipt $t $chain"; done <<<"$ours" >>"$REC/chains-removed"
        script=""
        for t in $IPT_TABLES; do
            local names
            names="$(echo "$ours" | awk -v t="$t" '$1 == t {print $2}')"
            [ -n "$names" ] || continue
            script+="*$t"$'\n'
            # Rules in chains that are not ours that jump to ours.
            local pattern
            pattern="$(echo "$names" | paste -sd'|')"
            while IFS= read -r rule; do
                local from="${rule#-A }"
                from="${from%% *}"
                if ! echo "$names" | grep -qxF "$from"; then script+="-D ${rule#-A }"$'\n'; fi
            done < <("$ipt-save" -t "$t" | grep -E -- "^-A .* -[jg] ($pattern)( |\$)" || true)
            for chain in $names; do script+="-F $chain"$'\n'; done
            for chain in $names; do script+="-X $chain"$'\n'; done
            script+="COMMIT"$'\n'
        done
        if printf '%s' "$script" | "$ipt-restore" --noflush; then
            say "removed $(echo "$ours" | wc -l) $ipt chains"
        else
            say "could not remove some $ipt chains; they were: $(echo "$ours" | tr '\n' ' ')"
        fi
    done
}

remove_cgroups() {
    [ -f "$REC/cgroups-created" ] || return 0
    local d n=0
    while read -r d; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        if [ -d "$d" ]; then say "could not remove $d (processes left in it?)"; else n=$((n + 1)); fi
    done <"$REC/cgroups-created"
    [ "$n" -eq 0 ] || say "removed the kubepods cgroups ($n hierarchies)"
}

restore_sysctls() {
    [ -f "$REC/sysctls.before" ] || return 0
    local s v
    while read -r s v; do sysctl -qw "$s=$v" 2>/dev/null || say "could not restore $s=$v"; done <"$REC/sysctls.before"
}

remove_paths() {
    local p
    if [ -f "$REC/paths-created" ]; then
        while read -r p; do
            [ -e "$p" ] || continue
            if grep -q " ${p}[/ ]" /proc/self/mountinfo; then say "not removing $p: something is still mounted in it"; continue; fi
            rm -rf "$p"
        done <"$REC/paths-created"
    fi
    # Folders that existed before: only the entries that `up` added.
    for p in /var/lib/kubelet /run/netns; do
        local before
        before="$REC/$(basename "$p").entries-before"
        if [ ! -f "$before" ] || [ ! -d "$p" ]; then continue; fi
        find "$p" -mindepth 1 -maxdepth 1 | sort | comm -13 "$before" - | while read -r e; do rm -rf "$e"; done
    done
}

cmd_down() {
    need_root
    if [ ! -d "$STATE" ]; then
        say "down already (no $STATE)"
        return 0
    fi
    stop_pid kube-controller-manager
    stop_pid kube-scheduler
    remove_pods
    stop_pid kube-proxy
    stop_pid kubelet
    remove_containers
    stop_pid kube-apiserver
    stop_pid etcd
    stop_pid containerd
    kill_shims
    unmount_ours
    if [ -f "$REC/bridge" ]; then
        local b l
        b="$(cat "$REC/bridge")"
        for l in $(ip -o link show master "$b" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
            ip link del "$l" 2>/dev/null || true
        done
        ip link del "$b" 2>/dev/null && say "removed the bridge $b"
        rm -f "$REC/bridge"
    fi
    remove_chains
    remove_cgroups
    restore_sysctls
    remove_paths
    # Everything else `up` made is in the state dir (containerd's root and state, etcd, volumes).
    if grep -q " ${STATE}[/ ]" /proc/self/mountinfo; then
        say "error: something is still mounted under $STATE; not removing it"
        return 1
    fi
    local logs
    logs="$(mktemp -d)"
    [ -d "$LOGS" ] && mv "$LOGS" "$logs/"
    rm -rf "$STATE"
    if [ -d "$logs/logs" ]; then mkdir -p "$STATE.logs"; rm -rf "$STATE.logs"; mv "$logs/logs" "$STATE.logs"; fi
    rmdir "$logs"
    say "down; the last run's logs are in $STATE.logs"
}

main() {
    case "${1:-}" in
        build) cmd_build ;;
        up) cmd_up ;;
        down) cmd_down ;;
        load) shift; cmd_load "$@" ;;
        status) cmd_status ;;
        kubeconfig) echo "$KUBECONFIG_FILE" ;;
        kubectl) shift; kc "$@" ;;
        node-ip) echo "$NODE_IP" ;;
        pid) shift; cmd_pid "$@" ;;
        *) sed -n '2,/^$/p' "$0"; exit 2 ;;
    esac
}

# On one line: bash has read all of it before it runs, so editing this file meanwhile is harmless.
main "$@"; exit
