#!/usr/bin/env bash
# Rolls a new image out to one namespace with the production overlay, then waits for every
# Deployment: deploy/rollout.sh NAMESPACE. Needs IMAGE (registry/name:tag) and KUBECONFIG_CONTENT
# (the cluster's kubeconfig) in the environment, and kubectl on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
namespace="${1:?usage: deploy/rollout.sh NAMESPACE}"
: "${IMAGE:?IMAGE is required}"
: "${KUBECONFIG_CONTENT:?KUBECONFIG_CONTENT is required}"

kubeconfig="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$kubeconfig" "$work"' EXIT
printf '%s' "$KUBECONFIG_CONTENT" >"$kubeconfig"
export KUBECONFIG="$kubeconfig"

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
kubectl apply --server-side -f "$work/rendered.yaml"
for deployment in $(kubectl -n "$namespace" get deployments -l app.kubernetes.io/name=onlinebank -o name); do
    kubectl -n "$namespace" rollout status "$deployment" --timeout=10m
done
