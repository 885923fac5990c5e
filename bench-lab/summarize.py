#!/usr/bin/env python3
"""Summarise bench results for BENCHMARKS.md, as Markdown.

  python3 bench-lab/summarize.py floor [DIR]   the floor table: every in-memory workload,
                                               ours against sharded_map, from the
                                               interleaved bench (DIR/interleaved.tsv)
                                               and the memory bench (DIR/memory.txt)
  python3 bench-lab/summarize.py [DIR]         one table of medians per workload of a
                                               criterion run (DIR/<group>/<competitor>/
                                               new/*.json), and ours/sharded_map

DIR is the target directory's criterion/ (default target/criterion).
"""

import json
import os
import re
import sys

args = sys.argv[1:]
MODE = "floor" if args and args[0] == "floor" else "criterion"
if MODE == "floor":
    args = args[1:]
ROOT = args[0] if args else os.path.join("target", "criterion")

# The workloads of the floor table, with their unit and the target of ours/sharded_map
# (memory: bytes per Success record, at most the target).
FLOOR = [
    ("query_hit", "M queries/s", 1.0),
    ("query_miss", "M queries/s", 0.95),
    ("revoke_cycle", "M cycles/s", 0.9),
    ("lifecycle", "M tasks/s", 0.95),
    ("hot_key", "M launches/s", 0.9),
]
MEMORY_TARGET = 21.0


def memory():
    """Bytes per Success record filled by `launch`, by competitor, from memory.txt."""
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


def median_text(ratio):
    """The median of a (median, min, max) ratio, or '-' if it was not measured."""
    return f"{ratio[0]:.3f}" if ratio else "-"


def floor_table():
    rates, ratios, info = {}, {}, {}
    path = os.path.join(ROOT, "interleaved.tsv")
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        sys.exit(f"no {path}: run the interleaved bench first (bench-lab/ab.sh floor)")
    for line in lines:
        f = line.split("\t")
        if f[0] == "rate":
            rates[(f[1], f[2])] = float(f[3])
        elif f[0] == "ratio":
            ratios[(f[1], f[2], f[3])] = (float(f[4]), float(f[5]), float(f[6]))
        else:
            info[f[0]] = f[1]
    rounds = info.get("rounds", "?")
    print(f"Medians of {rounds} interleaved rounds; ours/floor is the median of the per-round")
    print("ratios (its range in brackets), A/A the same for ours against a second copy of ours;")
    print("phase_tables is the floor with a table per phase, as ours.")
    print()
    print(
        "| workload | ours | floor (sharded_map) | ours/floor [range] | A/A "
        "| phase_tables/floor | ours/phase_tables | target | |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for workload, unit, target in FLOOR:
        ours, floor = rates.get((workload, "ours")), rates.get((workload, "sharded_map"))
        r = ratios.get((workload, "ours", "sharded_map"))
        aa = ratios.get((workload, "ours", "ours_again"))
        pt = ratios.get((workload, "phase_tables", "sharded_map"))
        op = ratios.get((workload, "ours", "phase_tables"))
        if ours is None or floor is None or r is None:
            print(f"| {workload} | - | - | - | - | - | - | >= {target} | not measured |")
            continue
        verdict = "met" if r[0] >= target else "**missed**"
        print(
            f"| {workload} | {ours / 1e6:.3f} {unit} | {floor / 1e6:.3f} {unit} | "
            f"**{r[0]:.3f}** [{r[1]:.3f} .. {r[2]:.3f}] | {median_text(aa)} | {median_text(pt)} | {median_text(op)} "
            f"| >= {target} | {verdict} |"
        )
    mem = memory()
    ours, floor = mem.get("ours"), mem.get("sharded_map")
    if ours is None or floor is None:
        print(
            f"| memory per Success record | - | - | - | - | - | - | <= {MEMORY_TARGET:g} B "
            "| not measured |"
        )
    else:
        verdict = "met" if ours <= MEMORY_TARGET else "**missed**"
        print(
            f"| memory per Success record | {ours:.1f} B | {floor:.1f} B | {ours / floor:.3f} | - "
            f"| - | - | <= {MEMORY_TARGET:g} B | {verdict} |"
        )
    if "others" in info:
        print()
        print(f"Other processes used {float(info['others']):.2f} CPUs on average during the rounds.")


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


def criterion_tables():
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

    print("### ours / sharded_map (ratio of the medians, measured minutes apart)\n")
    print("| workload | ours/floor | target |")
    print("|---|---:|---:|")
    for workload, _, target in FLOOR:
        ours, floor = results.get((workload, "ours")), results.get((workload, "sharded_map"))
        if ours and floor and ours["rate"] and floor["rate"]:
            print(f"| {workload} | {ours['rate'] / floor['rate']:.3f} | >= {target} |")
        else:
            print(f"| {workload} | - | >= {target} |")
    mem = memory()
    if "ours" in mem and "sharded_map" in mem:
        print(f"| memory per Success record | {mem['ours']:.1f} B (floor {mem['sharded_map']:.1f} B) "
              f"| <= {MEMORY_TARGET:g} B |")


if MODE == "floor":
    floor_table()
else:
    criterion_tables()
