#!/usr/bin/env python3
"""Prints import cycles among drctl's top-level modules (src/<module>.rs or src/<module>/):
module A depends on B when a file of A names `crate::B` outside its tests. Usage:
    python3 scripts/module-cycles.py [src]
Exits 0 and prints "cycles: 0" when the module graph is acyclic; prints each strongly connected
group of modules (and who uses whom inside it) otherwise. Informational: the restructure issue
tracks the remaining cycle."""
import re, os, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
# top-level module of a file
def top(path):
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    name = parts[0]
    return name[:-3] if name.endswith('.rs') else name
deps = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f)
        m = top(p)
        if m in ('main', 'lib'): continue
        src = open(p).read()
        # strip test modules
        src = src.split('#[cfg(test)]')[0]
        for d in re.findall(r'crate::([a-z_]+)', src):
            if d != m: deps.setdefault(m, set()).add(d)
        deps.setdefault(m, set())
# find cycles via Tarjan SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in deps.get(v, ()):
        if w not in deps: continue
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
sys.setrecursionlimit(10000)
for v in list(deps): 
    if v not in index: sc(v)
for c in sccs:
    print("cycle among:", sorted(c))
    for a in sorted(c):
        print("  ", a, "->", sorted(d for d in deps[a] if d in c))
print("modules:", len(deps), "cycles:", len(sccs))
