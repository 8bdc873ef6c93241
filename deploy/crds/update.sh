#!/usr/bin/env bash
# Refreshes the vendored CRDs under deploy/crds/ from the package registries, at the versions
# pinned below; never run by a test or by deploy/check.sh (they read the committed files only).
#
# - CloudNativePG: config/crd/bases of its Go module (Cluster, Backup, ScheduledBackup);
# - the Barman Cloud plugin: config/crd/bases of its Go module (ObjectStore);
# - Strimzi: no registry package carries its CRD YAMLs, so they are generated exactly as Strimzi's
#   build generates packaging/install/cluster-operator/04x-Crd-*.yaml (the arguments of the
#   generate-crd-co-install-v1 execution in io.strimzi:api's published pom), by the published
#   io.strimzi:crd-generator from the published io.strimzi:api classes, both from Maven Central.
#   Both need Java 21 or later (JAVA_HOME; Temurin 25 when present).
#
# Usage: deploy/crds/update.sh   (then review `git diff deploy/crds` and the versions in README.md)
set -euo pipefail
cd "$(dirname "$0")"

CNPG_MODULE="github.com/cloudnative-pg/cloudnative-pg@v1.28.2"
BARMAN_MODULE="github.com/cloudnative-pg/plugin-barman-cloud@v0.15.0"
STRIMZI_VERSION=1.2.0

module_dir() {
    GOFLAGS=-mod=mod go mod download -json "$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

cnpg="$(module_dir "$CNPG_MODULE")/config/crd/bases"
for kind in clusters backups scheduledbackups; do
    install -m 0644 "$cnpg/postgresql.cnpg.io_$kind.yaml" cloudnative-pg/
done
barman="$(module_dir "$BARMAN_MODULE")/config/crd/bases"
install -m 0644 "$barman/barmancloud.cnpg.io_objectstores.yaml" plugin-barman-cloud/

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>strimzi-crds</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$STRIMZI_VERSION</version></dependency>
  </dependencies>
</project>
EOF
if [ -z "${JAVA_HOME:-}" ] && [ -d /usr/lib/jvm/temurin-25-jdk-amd64 ]; then
    export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
fi
(cd "$work" && mvn -q -B dependency:build-classpath -Dmdep.outputFile=classpath.txt)
"${JAVA_HOME:+$JAVA_HOME/bin/}java" -cp "$(cat "$work/classpath.txt")" io.strimzi.crdgenerator.CrdGenerator \
    --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
    --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
    io.strimzi.api.kafka.model.kafka.Kafka=strimzi/040-Crd-kafka.yaml \
    io.strimzi.api.kafka.model.topic.KafkaTopic=strimzi/043-Crd-kafkatopic.yaml \
    io.strimzi.api.kafka.model.user.KafkaUser=strimzi/044-Crd-kafkauser.yaml \
    io.strimzi.api.kafka.model.nodepool.KafkaNodePool=strimzi/045-Crd-kafkanodepool.yaml
echo "deploy/crds: refreshed; update the versions in deploy/crds/README.md"
