#!/usr/bin/env bash
# Proves deploy/check.sh can fail: each mutation below is applied to a fresh copy of the committed
# tree (git archive HEAD) and check.sh must then exit non-zero. Not run by .ci/run (about 2-3
# minutes); run it after changing the checks: deploy/check_selftest.sh PATH-TO-ONLINEBANK-BINARY
set -u
src="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:?usage: deploy/check_selftest.sh PATH-TO-ONLINEBANK-BINARY}")"
missed=0
try() {
    local label="$1" cmd="$2" copy out
    copy="$(mktemp -d)"
    git -C "$src" archive HEAD | tar -x -C "$copy"
    (cd "$copy" && eval "$cmd")
    if out="$(bash "$copy/deploy/check.sh" "$bin" 2>&1)"; then
        echo "NOT CAUGHT: $label"
        missed=$((missed + 1))
    else
        echo "caught: $label -> $(echo "$out" | grep -v '^-- \|^   \|^validate_crds: .* 0 errors$\|^check_manifests: all-in-one' | grep -m1 . | cut -c1-200)"
    fi
    rm -rf "$copy"
}
try "readiness path" "sed -i '0,/path: \/health\/ready/s//path: \/healthz/' deploy/k8s/base/request.yaml"
try "probe port" "sed -i '0,/port: admin\$/s//port: http/' deploy/k8s/base/auth.yaml"
try "unknown setting in ConfigMap" "sed -i 's/      - ONLINEBANK_LOCKOUT_SECS=300/&\n      - ONLINEBANK_BOGUS=1/' deploy/k8s/base/kustomization.yaml"
try "grace period" "sed -i 's/terminationGracePeriodSeconds: 30/terminationGracePeriodSeconds: 12/' deploy/k8s/base/mypage.yaml"
try "invalid Deployment field" "sed -i 's/  revisionHistoryLimit: 5/  revisionHistoryLimits: 5/' deploy/k8s/base/history.yaml"
try "invalid CNPG Cluster field" "sed -i 's/  instances: 3/  instance: 3/' deploy/k8s/overlays/production/postgres.yaml"
try "misspelled ObjectStore field" "sed -i 's/  retentionPolicy: 30d/  retentionPolicys: 30d/' deploy/k8s/overlays/production/postgres.yaml"
try "ScheduledBackup without a schedule" "sed -i '/^  schedule: /d' deploy/k8s/overlays/production/postgres.yaml"
try "Strimzi object on v1beta2" "sed -i 's#^apiVersion: kafka.strimzi.io/v1\$#apiVersion: kafka.strimzi.io/v1beta2#' deploy/k8s/overlays/production/kafka.yaml"
try "ObjectStore serverName (a CEL rule)" "sed -i 's#^    destinationPath: s3://onlinebank-backups/db#&\n    serverName: onlinebank-db#' deploy/k8s/overlays/production/postgres.yaml"
try "bus namespace without its topics" "sed -i 's/replication=3&security/replication=3\\&namespace=r1\\&security/' deploy/k8s/overlays/production/kustomization.yaml"
try "restore manifest drifting from production" "sed -i 's/    size: 20Gi/    size: 50Gi/' deploy/k8s/overlays/production/postgres.yaml"
try "listener authentication Strimzi 1.x lacks" "sed -i '0,/type: scram-sha-512/s//type: oauth/' deploy/k8s/overlays/production/kafka.yaml"
try "KafkaTopic replicas" "sed -i '/name: onlinebank.accounts/,$ s/  replicas: 3/  replicas: 2/' deploy/k8s/overlays/production/kafka.yaml"
try "broker count" "sed -i '0,/  replicas: 3/s//  replicas: 1/' deploy/k8s/overlays/production/kafka.yaml"
try "topic name" "sed -i 's/name: onlinebank.accounts/name: onlinebank.account/' deploy/k8s/overlays/production/kafka.yaml"
try "settings table" "sed -i 's/| \`ONLINEBANK_BIND\` | \`--bind\` | \`127.0.0.1\`/| \`ONLINEBANK_BIND\` | \`--bind\` | \`0.0.0.0\`/' docs/deploy.md"
try "compose grace" "sed -i '/stop_grace_period/d' compose.yaml"
try "compose syntax" "sed -i 's/^services:/services: [/' compose.yaml"
try "Dockerfile" "printf 'RUN cd /tmp && true\n' >> Dockerfile"
try "workflow" "sed -i 's/github.ref }}/github.nope.ref }}/' .github/workflows/ci.yml"
try "shell script" "printf 'echo \$namespace\$1\n' >> deploy/rollout.sh"
try "release image render" "sed -i 's#newName: registry.example.com/onlinebank#newName: registry.example.org/onlinebank#' deploy/k8s/overlays/production/kustomization.yaml"
try "Service selecting nothing" "sed -i '0,/      app.kubernetes.io\/component: gateway\n  ports/s//x/; /^kind: Service/,/^---/s/component: gateway/component: gatewy/' deploy/k8s/base/gateway.yaml"
echo "selftest: $missed mutations not caught"
[ "$missed" -eq 0 ]
