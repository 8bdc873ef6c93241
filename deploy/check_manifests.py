#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests against what the binary really serves and reads.

Usage: check_manifests.py ONLINEBANK_BINARY RENDERED.yaml...

Fails (exit 1, one line per problem) unless, in every Deployment:
- the readiness probe asks /health/ready and the liveness and startup probes /health/live, on the
  container port the bank listens on (ONLINEBANK_LISTEN from its ConfigMap, or `up --port`);
- every ONLINEBANK_* variable set (ConfigMap data, Secret data, env) is one the binary lists in
  `onlinebank settings --format env`;
- terminationGracePeriodSeconds exceeds the drain delay (ONLINEBANK_DRAIN_DELAY_MS) plus the 10 s
  the bank gives in-flight calls.
"""
import subprocess
import sys

import yaml

IN_FLIGHT_DRAIN_S = 10


def settings(binary):
    out = subprocess.run([binary, "settings", "--format", "env"], check=True,
                         capture_output=True, text=True).stdout
    return {line.split("=", 1)[0] for line in out.splitlines() if line.startswith("ONLINEBANK_")}


def main():
    binary, files = sys.argv[1], sys.argv[2:]
    known = settings(binary)
    objects = []
    for path in files:
        with open(path) as f:
            objects += [o for o in yaml.safe_load_all(f) if o]
    config = {}
    problems = []
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("ConfigMap", "Secret"):
            keys = list((o.get("data") or {}).keys()) + list((o.get("stringData") or {}).keys())
            for key in keys:
                if key.startswith("ONLINEBANK_") or o["kind"] == "ConfigMap":
                    if key not in known:
                        problems.append(f"{name}: {key} is not a setting the binary reads")
            if o["kind"] == "ConfigMap":
                config[o["metadata"]["name"]] = o.get("data") or {}
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    if not deployments:
        problems.append("no Deployment rendered")
    for d in deployments:
        name = f"Deployment/{d['metadata']['name']}"
        spec = d["spec"]["template"]["spec"]
        for c in spec["containers"]:
            env = {}
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    env.update(config.get(ref["name"], {}))
            for var in c.get("env", []):
                if var["name"].startswith("ONLINEBANK_") and var["name"] not in known:
                    problems.append(f"{name}: env {var['name']} is not a setting the binary reads")
                env[var["name"]] = var.get("value", "")
            args = c.get("args", [])
            if args[:1] == ["up"]:
                port = int(args[args.index("--port") + 1]) if "--port" in args else 8080
            else:
                listen = env.get("ONLINEBANK_LISTEN", "127.0.0.1:8080")
                port = int(listen.rsplit(":", 1)[1])
                if not listen.startswith("0.0.0.0:"):
                    problems.append(f"{name}: ONLINEBANK_LISTEN={listen} is not reachable from outside the pod")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe, path in (("readinessProbe", "/health/ready"),
                                ("livenessProbe", "/health/live"),
                                ("startupProbe", "/health/live")):
                got = (c.get(probe) or {}).get("httpGet")
                if not got:
                    problems.append(f"{name}: no {probe}")
                    continue
                if got.get("path") != path:
                    problems.append(f"{name}: {probe} asks {got.get('path')}, the bank serves {path}")
                target = got.get("port")
                number = ports.get(target, target)
                if number != port:
                    problems.append(f"{name}: {probe} on port {target} ({number}), the bank listens on {port}")
            drain_ms = int(env.get("ONLINEBANK_DRAIN_DELAY_MS", "1000"))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace <= drain_ms / 1000 + IN_FLIGHT_DRAIN_S:
                problems.append(f"{name}: terminationGracePeriodSeconds {grace} <= drain {drain_ms} ms + {IN_FLIGHT_DRAIN_S} s")
    for problem in problems:
        print(f"check_manifests: {problem}")
    print(f"check_manifests: {len(deployments)} Deployments, {len(objects)} objects, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
