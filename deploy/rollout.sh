#!/usr/bin/env bash
# Rolls a new image out to one namespace with the production overlay, then waits for every
# Deployment: deploy/rollout.sh NAMESPACE. Needs IMAGE (registry/name:tag) and KUBECONFIG_CONTENT
# (the cluster's kubeconfig) in the environment, and kubectl on the PATH.
# deploy/rollout.sh --render NAMESPACE only prints what it would apply (no cluster needed; used by
# deploy/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
render_only=false
if [ "${1:-}" = "--render" ]; then
    render_only=true
    shift
fi
namespace="${1:?usage: deploy/rollout.sh [--render] NAMESPACE}"
: "${IMAGE:?IMAGE is required}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# An overlay of the production overlay: the new image and the target namespace.
cp -r deploy/k8s "$work/k8s"
mkdir -p "$work/k8s/overlays/release"
cat >"$work/k8s/overlays/release/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ${namespace}
resources:
  - ../production
images:
  - name: registry.example.com/onlinebank
    newName: ${IMAGE%:*}
    newTag: ${IMAGE##*:}
YAML
kubectl kustomize "$work/k8s/overlays/release" >"$work/rendered.yaml"
if $render_only; then
    cat "$work/rendered.yaml"
    exit 0
fi

: "${KUBECONFIG_CONTENT:?KUBECONFIG_CONTENT is required}"
printf '%s' "$KUBECONFIG_CONTENT" >"$work/kubeconfig"
export KUBECONFIG="$work/kubeconfig"
kubectl apply --server-side -f "$work/rendered.yaml"
for deployment in $(kubectl -n "$namespace" get deployments -l app.kubernetes.io/name=onlinebank -o name); do
    kubectl -n "$namespace" rollout status "$deployment" --timeout=10m
done
