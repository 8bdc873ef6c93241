#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests (and compose.yaml) against what the binary serves and reads.

Usage: check_manifests.py ONLINEBANK_BINARY [--compose compose.yaml] [--topics event.rs] RENDERED.yaml...

Each RENDERED.yaml is one overlay's `kubectl kustomize` output, checked on its own.

Fails (exit 1, one line per problem) unless:
- every Deployment runs `up` or `serve <role>` with a role the binary has;
- it listens on 0.0.0.0 (ONLINEBANK_LISTEN / `--listen` for serve, ONLINEBANK_PORT / `--port`
  for up) on a declared container port;
- its readiness probe asks /health/ready and its liveness and startup probes /health/live, on the
  admin listener's port (ONLINEBANK_ADMIN_LISTEN), whose connections have a budget of their own, so
  a flood of the public port cannot fail the probes;
- its Prometheus annotation names the admin listener's port (ONLINEBANK_ADMIN_LISTEN), bound to
  0.0.0.0 and declared as a container port;
- every variable it gets (ConfigMap and Secret data, `env:` names) is one the binary lists in
  `onlinebank settings --format env`;
- with a read-only root filesystem, ONLINEBANK_DATA_DIR lies on a mounted volume;
- terminationGracePeriodSeconds exceeds the drain delay (ONLINEBANK_DRAIN_DELAY_MS) plus the 10 s
  the bank gives in-flight calls;
- every Service, PodDisruptionBudget and NetworkPolicy selects a Deployment's pods, every Service's
  named targetPort exists, every HPA scales a Deployment, every Deployment's pods are selected by a
  NetworkPolicy;
- Strimzi KafkaTopics (when rendered) are exactly the topics the code publishes on (--topics, the
  source that defines them; prefixed by ONLINEBANK_BUS's namespace when it has one), with the partitions and replication of ONLINEBANK_BUS, replication
  3 and min.insync.replicas 2, on at least 3 brokers;
- compose.yaml (--compose): only settings the binary reads, every role present, each role's
  stop_grace_period over the drain delay plus 10 s.
"""
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import yaml

IN_FLIGHT_DRAIN_S = 10
ROLES = ("gateway", "request", "auth", "account", "history", "mypage")
DRAIN_DEFAULT_MS = {"serve": 1000, "up": 0}

problems = []


def problem(text):
    problems.append(text)


def settings(binary):
    out = subprocess.run([binary, "settings", "--format", "env"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split("=", 1)[0] for line in out.splitlines() if line.startswith("ONLINEBANK_")}


def flag(args, name):
    """The value of --name VALUE or --name=VALUE in args, else None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def grace_ok(where, grace_s, drain_ms):
    if grace_s <= drain_ms / 1000 + IN_FLIGHT_DRAIN_S:
        problem(f"{where}: grace period {grace_s} s <= drain {drain_ms} ms + {IN_FLIGHT_DRAIN_S} s")


def check_deployment(d, known, config, secrets):
    name = f"Deployment/{d['metadata']['name']}"
    template = d["spec"]["template"]
    spec = template["spec"]
    strategy = d["spec"].get("strategy", {})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        if strategy.get("rollingUpdate", {}).get("maxUnavailable") != 0:
            problem(f"{name}: rolling update without maxUnavailable: 0")
    mounts_by_volume = {v["name"] for v in spec.get("volumes", [])}
    for c in spec["containers"]:
        env = {}
        for source in c.get("envFrom", []):
            if "prefix" in source:
                problem(f"{name}: envFrom with a prefix hides the settings' names")
            if source.get("configMapRef"):
                env.update(config.get(source["configMapRef"]["name"], {}))
            if source.get("secretRef"):
                env.update({k: "<secret>" for k in secrets.get(source["secretRef"]["name"], {})})
        for var in c.get("env", []):
            if var["name"] not in known:
                problem(f"{name}: env {var['name']} is not a setting the binary reads")
            env[var["name"]] = var.get("value", "<from elsewhere>")
        args = c.get("args") or c.get("command") or []
        command = args[0] if args else None
        if command == "up":
            bind = flag(args, "--bind") or env.get("ONLINEBANK_BIND", "127.0.0.1")
            port = int(flag(args, "--port") or env.get("ONLINEBANK_PORT", "8080"))
            listen = f"{bind}:{port}"
        elif command == "serve":
            role = next((a for a in args[1:] if not a.startswith("-")), None)
            if role not in ROLES:
                problem(f"{name}: `serve {role}` is not a role of the binary ({', '.join(ROLES)})")
            listen = flag(args, "--listen") or env.get("ONLINEBANK_LISTEN", "127.0.0.1:8080")
            port = port_of(listen)
        else:
            problem(f"{name}: runs {args!r}, not `up` or `serve <role>`")
            continue
        if not listen.startswith("0.0.0.0:"):
            problem(f"{name}: the bank listens on {listen}, unreachable from outside the pod")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if port not in ports.values():
            problem(f"{name}: no containerPort {port} (the bank's listener)")
        admin = flag(args, "--admin-listen") or env.get("ONLINEBANK_ADMIN_LISTEN", "127.0.0.1:0")
        # The probes ask the admin listener, whose connections have a budget of their own: a
        # flood of the public port must not fail them and get the pod restarted.
        for probe, path in (("readinessProbe", "/health/ready"),
                            ("livenessProbe", "/health/live"),
                            ("startupProbe", "/health/live")):
            got = (c.get(probe) or {}).get("httpGet")
            if not got:
                problem(f"{name}: no httpGet {probe}")
                continue
            if got.get("path") != path:
                problem(f"{name}: {probe} asks {got.get('path')}, the bank serves {path}")
            target = got.get("port")
            number = ports.get(target, target)
            if number != port_of(admin):
                problem(f"{name}: {probe} on port {target} ({number}), the admin listener is on "
                        f"{port_of(admin)} (probes must not share the public port's connections)")
        scrape = template["metadata"].get("annotations", {}).get("prometheus.io/port")
        if not admin.startswith("0.0.0.0:") or port_of(admin) == 0:
            problem(f"{name}: admin listener {admin} (metrics) is not on a fixed port of 0.0.0.0")
        elif scrape is not None and int(scrape) != port_of(admin):
            problem(f"{name}: prometheus.io/port {scrape}, the admin listener (/metrics) is on {port_of(admin)}")
        elif port_of(admin) not in ports.values():
            problem(f"{name}: no containerPort {port_of(admin)} (the admin listener)")
        security = c.get("securityContext", {})
        if security.get("readOnlyRootFilesystem"):
            data = flag(args, "--data-dir") or env.get("ONLINEBANK_DATA_DIR", "/data")
            mounted = [m["mountPath"] for m in c.get("volumeMounts", [])
                       if m["name"] in mounts_by_volume and not m.get("readOnly")]
            if not any(data == m or data.startswith(m.rstrip("/") + "/") for m in mounted):
                problem(f"{name}: read-only root filesystem and the data dir {data} is on no writable volume")
        for part in ("requests", "limits"):
            if not (c.get("resources") or {}).get(part):
                problem(f"{name}: no resource {part}")
        drain_ms = int(env.get("ONLINEBANK_DRAIN_DELAY_MS") or DRAIN_DEFAULT_MS[command])
        grace_ok(name, spec.get("terminationGracePeriodSeconds", 30), drain_ms)
        bus = env.get("ONLINEBANK_BUS")
        if bus and bus != "<secret>":
            yield bus


def check_topics(objects, buses, topics_source):
    kafka_topics = [o for o in objects if o["kind"] == "KafkaTopic"]
    if not kafka_topics:
        return
    expected = set()
    # A bus namespace (kafka://...?namespace=NAME, e.g. after a restore) prefixes every topic.
    namespaces = {parse_qs(urlparse(url).query).get("namespace", [""])[0] for url in set(buses)}
    if len(namespaces) > 1:
        problem(f"ONLINEBANK_BUS namespaces differ between roles: {sorted(namespaces)}")
    prefix = f"{min(namespaces)}." if namespaces and min(namespaces) else ""
    if topics_source:
        expected = {prefix + topic for topic in re.findall(
            r'pub const TOPIC_\w+: &str = "([^"]+)"', open(topics_source).read())}
        names = {t["spec"].get("topicName", t["metadata"]["name"]) for t in kafka_topics}
        if names != expected:
            problem(f"KafkaTopics {sorted(names)}, the code publishes on {sorted(expected)}")
    for url in set(buses):
        query = parse_qs(urlparse(url).query)
        partitions = int(query.get("partitions", ["8"])[0])
        replication = int(query.get("replication", ["1"])[0])
        if replication != 3:
            problem(f"ONLINEBANK_BUS {url}: replication {replication}, production wants 3")
        for t in kafka_topics:
            where = f"KafkaTopic/{t['metadata']['name']}"
            if t["spec"].get("partitions") != partitions:
                problem(f"{where}: {t['spec'].get('partitions')} partitions, ONLINEBANK_BUS says {partitions}")
            if t["spec"].get("replicas") != replication:
                problem(f"{where}: {t['spec'].get('replicas')} replicas, ONLINEBANK_BUS says {replication}")
    brokers = sum(p["spec"].get("replicas", 0) for p in objects
                  if p["kind"] == "KafkaNodePool" and "broker" in p["spec"].get("roles", []))
    if brokers < 3:
        problem(f"KafkaNodePools give {brokers} brokers, replication 3 needs 3")
    for t in kafka_topics:
        where = f"KafkaTopic/{t['metadata']['name']}"
        if t["spec"].get("replicas") != 3:
            problem(f"{where}: replicas {t['spec'].get('replicas')}, not 3")
        if str((t["spec"].get("config") or {}).get("min.insync.replicas")) != "2":
            problem(f"{where}: min.insync.replicas is not 2")


def check_rendered(path, known, topics_source):
    """One rendered overlay: its objects only see each other."""
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    config, secrets = {}, {}
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("ConfigMap", "Secret"):
            data = {**(o.get("data") or {}), **(o.get("stringData") or {})}
            for key in data:
                if key not in known:
                    problem(f"{name}: {key} is not a setting the binary reads")
            (config if o["kind"] == "ConfigMap" else secrets)[o["metadata"]["name"]] = data
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    if not deployments:
        problem("no Deployment rendered")
    buses = []
    for d in deployments:
        buses += list(check_deployment(d, known, config, secrets))
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments}
    ports = {d["metadata"]["name"]: {p.get("name") for c in d["spec"]["template"]["spec"]["containers"]
                                     for p in c.get("ports", [])} for d in deployments}
    policed = set()
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        kind = o["kind"]
        if kind == "Service" and o["spec"].get("selector"):
            hit = [d for d, labels in pods.items() if selects(o["spec"]["selector"], labels)]
            if not hit:
                problem(f"{name}: selects no Deployment's pods")
            for p in o["spec"].get("ports", []):
                target = p.get("targetPort")
                if isinstance(target, str) and any(target not in ports[d] for d in hit):
                    problem(f"{name}: targetPort {target} is not a port of {', '.join(hit)}")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = (o["spec"].get("selector") or o["spec"].get("podSelector") or {}).get("matchLabels", {})
            hit = [d for d, labels in pods.items() if selects(selector, labels)]
            if not hit:
                problem(f"{name}: selects no Deployment's pods")
            if kind == "NetworkPolicy":
                policed.update(hit)
        elif kind == "HorizontalPodAutoscaler":
            ref = o["spec"]["scaleTargetRef"]
            if ref["kind"] != "Deployment" or ref["name"] not in pods:
                problem(f"{name}: scales {ref['kind']}/{ref['name']}, not a rendered Deployment")
    for d in sorted(set(pods) - policed):
        problem(f"Deployment/{d}: no NetworkPolicy selects its pods")
    check_topics(objects, buses, topics_source)
    return len(deployments), len(objects)


def check_compose(path, known):
    compose = yaml.safe_load(open(path))
    services = compose.get("services", {})
    roles = set()
    for name, service in services.items():
        command = service.get("command") or []
        if command[:1] != ["serve"] and command[:1] != ["up"]:
            continue
        roles.update(command[1:2] if command[0] == "serve" else ROLES)
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        for key in env:
            if key.startswith("ONLINEBANK_") and key not in known:
                problem(f"compose {name}: {key} is not a setting the binary reads")
        drain_ms = int(env.get("ONLINEBANK_DRAIN_DELAY_MS") or DRAIN_DEFAULT_MS[command[0]])
        grace = service.get("stop_grace_period", "10s")
        seconds = int(re.fullmatch(r"(\d+)s", str(grace)).group(1)) if re.fullmatch(r"\d+s", str(grace)) else 0
        grace_ok(f"compose {name}: stop_grace_period", seconds, drain_ms)
    for role in sorted(set(ROLES) - roles):
        problem(f"compose: no service runs `serve {role}`")
    return len(services)


def main():
    args = sys.argv[1:]
    binary, compose, topics = args.pop(0), None, None
    while args and args[0] in ("--compose", "--topics"):
        option, value = args.pop(0), args.pop(0)
        compose, topics = (value, topics) if option == "--compose" else (compose, value)
    known = settings(binary)
    summary = []
    for path in args:
        deployments, objects = check_rendered(path, known, topics)
        summary.append(f"{path.rsplit('/', 1)[-1]}: {deployments} Deployments, {objects} objects")
    if compose:
        summary.append(f"compose: {check_compose(compose, known)} services")
    for text in problems:
        print(f"check_manifests: {text}")
    print(f"check_manifests: {'; '.join(summary)}; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
