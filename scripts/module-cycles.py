#!/usr/bin/env python3
"""Checks drctl's module layering: a top-level module (src/<m>.rs or src/<m>/) may use only
modules of its own layer or lower ones, and no layer but the model layer has a cycle.

    python3 scripts/module-cycles.py [src]      exit 0 when the layering holds, 1 otherwise

Module A uses B when a file of A names `crate::B` outside its `#[cfg(test)]` part.

The model layer is one group by design: a manifest holds each kind's typed facts, which live
with the kind (sources/<kind>/), and a kind's restore and verification read manifests. Every
other layer is acyclic, and nothing below the model (storage, locks, plumbing) reaches up."""
import os, re, sys

LAYERS = [
    # plumbing: knows nothing of backups
    ["units", "layout", "secret", "process", "tarball", "archive", "keys", "schedule", "progress", "metrics",
     "durable", "place"],
    # storage and local state
    ["retention", "storage", "lock", "state"],
    # the model: config, manifests, kinds, the streaming pass, fetching and verifying one backup
    ["catalog", "config", "fetch", "pin", "pipeline", "sources", "verification"],
    # operations
    ["events", "backup", "restore", "verify", "prune", "check", "copy", "jobs", "daemon", "compose"],
    # the command line
    ["cli", "commands"],
]
MODEL = 2

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
layer = {m: i for i, ms in enumerate(LAYERS) for m in ms}
deps = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs"):
            continue
        p = os.path.join(dp, f)
        top = os.path.relpath(p, root).split(os.sep)[0]
        m = top[:-3] if top.endswith(".rs") else top
        if m in ("main", "lib"):
            continue
        src = open(p).read().split("#[cfg(test)]")[0]
        deps.setdefault(m, set()).update(d for d in re.findall(r"crate::([a-z_]+)", src) if d != m)

problems = []
for m in sorted(deps):
    if m not in layer:
        problems.append(f"{m}: not in any layer (add it to LAYERS in {sys.argv[0]})")
        continue
    for d in sorted(deps[m]):
        if d in layer and layer[d] > layer[m]:
            problems.append(f"{m} (layer {layer[m]}) uses {d} (layer {layer[d]}): a lower layer reaches up")

# Cycles inside each layer but the model's.
def cycles(nodes):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in deps.get(v, ()):
            if w not in nodes:
                continue
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out

for i, ms in enumerate(LAYERS):
    if i == MODEL:
        continue
    for c in cycles(set(ms) & set(deps)):
        problems.append(f"cycle in layer {i}: {' <-> '.join(c)}")

for p in problems:
    print(p)
print(f"{len(deps)} modules, {len(LAYERS)} layers, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
