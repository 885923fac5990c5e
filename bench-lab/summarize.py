#!/usr/bin/env python3
"""Summarise a full `cargo bench` run for BENCHMARKS.md.

Reads criterion's results (target/criterion/<group>/<competitor>/new/estimates.json
and benchmark.json) plus the memory and hot_key reports the benches write, and prints
Markdown: one table of medians per workload and the issue's targets with their ratios.

Usage: python3 bench-lab/summarize.py [target/criterion]
"""

import json
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")

GROUPS = [
    ("lifecycle", "tasks/s"),
    ("launch_wait", "tasks/s"),
    ("query_hit", "queries/s"),
    ("query_miss", "queries/s"),
    ("revoke_cycle", "cycles/s"),
    ("hot_key", "launches/s"),
    ("iterate_failed", "failed ids/s"),
]


def load(group, competitor):
    base = os.path.join(ROOT, group, competitor, "new")
    try:
        with open(os.path.join(base, "estimates.json")) as f:
            est = json.load(f)
        with open(os.path.join(base, "benchmark.json")) as f:
            bench = json.load(f)
    except FileNotFoundError:
        return None
    median_ns = est["median"]["point_estimate"]
    elements = (bench.get("throughput") or {}).get("Elements")
    rate = elements / (median_ns / 1e9) if elements else None
    return {"median_ns": median_ns, "elements": elements, "rate": rate}


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale * 0.9995:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(rate):
    if rate is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale * 0.9995:  # so that 999.7 k prints as 1 M, not 1e+03 k
            return f"{rate / scale:.3g} {unit}"
    return f"{rate:.3g}"


def competitors(group):
    path = os.path.join(ROOT, group)
    if not os.path.isdir(path):
        return []
    order = ["ours", "v2_0_2", "state_map", "minimal_map", "sharded_map", "bare_spawn", "rwlock_map"]
    found = [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and d != "report"]
    return sorted(found, key=lambda d: (next((i for i, o in enumerate(order) if d.startswith(o)), 99), d))


results = {}
for group, unit in GROUPS:
    rows = []
    for comp in competitors(group):
        r = load(group, comp)
        if r:
            results[(group, comp)] = r
            rows.append((comp, r))
    if not rows:
        continue
    print(f"### {group}\n")
    print(f"| competitor | median time / iteration | {unit} (at the median) |")
    print("|---|---:|---:|")
    for comp, r in rows:
        print(f"| {comp} | {fmt_time(r['median_ns'])} | {fmt_rate(r['rate'])} |")
    print()


def rate(group, comp):
    r = results.get((group, comp))
    return r and r["rate"]


def time(group, comp):
    r = results.get((group, comp))
    return r and r["median_ns"]


def memory():
    try:
        text = open(os.path.join(ROOT, "memory.txt")).read()
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)\s+([-\d.]+)\s+([-\d.]+)\s+", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def hot_ours():
    try:
        text = open(os.path.join(ROOT, "hot_key.txt")).read()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("ours "):
            return line
    return None


checks = []


def ratio_check(name, value, op, target, detail):
    if value is None:
        checks.append((name, "n/a", f"{op} {target}", "not measured", detail))
        return
    ok = value >= target if op == "≥" else value <= target
    checks.append((name, f"{value:.2f}×", f"{op} {target}×", "met" if ok else "**missed**", detail))


def div(a, b):
    return a / b if a and b else None


ratio_check("lifecycle vs state_map", div(rate("lifecycle", "ours"), rate("lifecycle", "state_map")),
            "≥", 1.25, "tasks/s ratio")
ratio_check("lifecycle vs bare spawn", div(rate("lifecycle", "ours"), rate("lifecycle", "bare_spawn")),
            "≥", 0.7, "tasks/s ratio")
ratio_check("query_hit vs rwlock_map", div(rate("query_hit", "ours"), rate("query_hit", "rwlock_map")),
            "≥", 1.0, "queries/s ratio")
ratio_check("query_miss vs 2.0.2", div(rate("query_miss", "ours"), rate("query_miss", "v2_0_2")),
            "≥", 1.0, "queries/s ratio")
ratio_check("revoke_cycle vs state_map",
            div(rate("revoke_cycle", "ours"), rate("revoke_cycle", "state_map")),
            "≥", 1.25, "cycles/s ratio")
mem = memory()
ratio_check("memory vs 2.0.2", div(mem.get("ours"), mem.get("v2_0_2")), "≤", 0.8,
            "bytes per Success record (filled by launch)")
ratio_check("iterate_failed time vs 2.0.2",
            div(time("iterate_failed", "ours_ids_in_state"), time("iterate_failed", "v2_0_2_failed_set")),
            "≤", 3.0, "our time / 2.0.2's time")
ratio_check("iterate_failed vs full scan",
            div(time("iterate_failed", "state_map_full_scan"), time("iterate_failed", "ours_ids_in_state")),
            "≥", 20.0, "full-scan time / our time")
line = hot_ours()
checks.append(("hot_key: one run, ends Success", "-", "exactly 1 run, Success",
               "met" if line and "1-1" in line and "Success" in line and "Working" not in line
               else "**missed**", (line or "no report").strip()))

print("### Targets\n")
print("| target | measured | required | verdict | what |")
print("|---|---:|---:|---|---|")
for c in checks:
    print("| " + " | ".join(c) + " |")
