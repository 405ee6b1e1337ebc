#!/usr/bin/env python3
"""Prints the engine benchmark table (markdown) from criterion's estimates and the sizes
file written by `cargo bench -p tandem-engine --bench traces`."""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
sizes = json.load(open(os.path.join(root, "trace-sizes.json")))


def est(group, bench):
    path = os.path.join(root, group.replace("/", "_"), bench, "new", "estimates.json")
    if not os.path.exists(path):
        # criterion keeps '/' in group names as nested directories on some versions
        path = os.path.join(root, *group.split("/"), bench, "new", "estimates.json")
    with open(path) as f:
        e = json.load(f)
    return e["median"]["point_estimate"] / 1e6  # ns -> ms


def fmt(ms):
    return f"{ms:,.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


print("| trace | txns | replay: raw yrs | replay: engine | engine / yrs (paired median) | v1 size | v2 size | load (decode+integrate) | remote apply (per-txn updates) |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for name, s in sorted(sizes.items()):
    y = est(f"replay/{name}", "yrs")
    e = est(f"replay/{name}", "engine")
    load = est(f"load/{name}", "engine")
    remote = est(f"remote_apply/{name}", "engine")
    print(f"| {name} | {s['txns']:,} | {fmt(y)} | {fmt(e)} | {s['paired_ratio']:.3f} | {s['v1_bytes']:,} B | {s['v2_bytes']:,} B | {fmt(load)} | {fmt(remote)} |")
