#!/usr/bin/env python3
"""One row of dev/scale.sh's table from a bench --json report and CPU ticks before and after.

Usage: scale_row.py REPORT COUNT CLK_TCK BANK0 PG0 KAFKA0 BANK1 PG1 KAFKA1
       scale_row.py --per-process REPORT CLK_TCK "NAME TICKS\n..." "NAME TICKS\n..."
                    (each bank process's CPU per deposit, one line)
"""
import json
import sys


def completed(report):
    with open(report) as file:
        return max(json.load(file)["operations"]["deposit"]["completed"], 1)


def per_process(report, hz, before, after):
    ticks = dict(line.split() for line in before.splitlines() if line.strip())
    done = completed(report)
    parts = []
    for line in after.splitlines():
        if not line.strip():
            continue
        name, now = line.split()
        used = int(now) - int(ticks.get(name, now))
        parts.append(f"{name} {used / hz * 1000 / done:.2f}")
    print("ms CPU per deposit per process: " + ", ".join(parts))


def main():
    if sys.argv[1] == "--per-process":
        per_process(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    report, count, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    before = [int(x) for x in sys.argv[4:7]]
    after = [int(x) for x in sys.argv[7:10]]
    with open(report) as file:
        result = json.load(file)
    deposit = result["operations"]["deposit"]
    done = max(deposit["completed"], 1)
    ms = [(a - b) / hz * 1000 / done for a, b in zip(after, before)]
    latency = deposit.get("latencyMs") or {}
    ok = result["invariants"]["ok"]
    print(f"| {count} | {deposit['perSecond']:,.0f} | {latency.get('p50', 0):.0f} ms | "
          f"{latency.get('p99', 0):.0f} ms | {sum(ms):.2f} ms | {ms[0]:.2f} | {ms[1]:.2f} | "
          f"{ms[2]:.2f} | {'ok' if ok else 'FAILED'} |")


if __name__ == "__main__":
    main()
