#!/usr/bin/env python3
"""One row of dev/scale.sh's table from a bench --json report and CPU ticks before and after.

Usage: scale_row.py REPORT COUNT CLK_TCK BANK0 PG0 KAFKA0 BANK1 PG1 KAFKA1
"""
import json
import sys


def main():
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
