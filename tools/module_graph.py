#!/usr/bin/env python3
"""The module dependency graph of `src/`, read from the code.

An edge A -> B means a file of the top-level module A names `crate::B` (in a `use` or a path).
`--check` fails (exit 1) on a circle among the top-level modules, or on a lower layer naming the
HTTP layer (see LOWER and HTTP below).

usage: tools/module_graph.py [--check] [--dot] [--self-test] [SRC]

`--self-test` checks the checker: a made-up tree with a circle and a logstore naming axum and the
API's parameters must be refused, and the same tree without them accepted.
"""
import os
import re
import sys

# Modules that must not depend on the HTTP layer, and what counts as the HTTP layer.
LOWER = ["logstore", "promql", "logql", "engine", "ingest", "time"]
HTTP_MODULES = ["api", "server", "auth", "connections", "params", "error", "limits"]
HTTP_CRATES = ["axum", "hyper", "hyper_util", "tower", "tower_http", "http", "http_body", "reqwest"]
# A backend's own client transport may speak HTTP: ClickHouse is reached over its HTTP interface.
# Only that one file, and only the client crate; the serving layer stays out of reach.
HTTP_CLIENT_FILES = {os.path.join("logstore", "clickhouse", "client.rs"): {"reqwest"}}

USE_BLOCK = re.compile(r"\buse\s+crate::\{(.*?)\};", re.S)
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
CRATE_USE = re.compile(r"(?:^|[^:\w])(" + "|".join(HTTP_CRATES) + r")::")


def top_module(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] if "\"" not in line.split("//", 1)[0] else line
                     for line in text.splitlines())


def read_graph(src):
    modules = set()
    edges = {}
    http_crates = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            module = top_module(src, path)
            if module in ("main", "lib"):
                continue
            modules.add(module)
            with open(path, encoding="utf-8") as f:
                text = strip_comments(f.read())
            # Test modules may reach anything: only the code's own dependencies count.
            text = text.split("#[cfg(test)]", 1)[0]
            names = set(PATH.findall(text))
            for block in USE_BLOCK.findall(text):
                for part in block.split(","):
                    part = part.strip()
                    if part:
                        names.add(re.split(r"[:\s{]", part, maxsplit=1)[0])
            for target in names:
                if target != module and target not in ("self",):
                    edges.setdefault(module, {}).setdefault(target, set()).add(
                        os.path.relpath(path, src))
            allowed = HTTP_CLIENT_FILES.get(os.path.relpath(path, src), set())
            for crate in set(CRATE_USE.findall(text)) - allowed:
                http_crates.setdefault(module, {}).setdefault(crate, set()).add(
                    os.path.relpath(path, src))
    edges = {a: {b: f for b, f in bs.items() if b in modules} for a, bs in edges.items()}
    return modules, edges, http_crates


def circles(modules, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def problems_of(src):
    modules, edges, http_crates = read_graph(src)
    problems = []
    for comp in circles(modules, edges):
        inner = [f"{a} -> {b} ({', '.join(sorted(edges[a][b]))})"
                 for a in comp for b in sorted(edges.get(a, {})) if b in comp]
        problems.append("circle among " + ", ".join(comp) + ":\n    " + "\n    ".join(inner))
    for lower in LOWER:
        for target, files in sorted(edges.get(lower, {}).items()):
            if target in HTTP_MODULES:
                problems.append(f"{lower} (a lower layer) names the HTTP layer's {target}: "
                                + ", ".join(sorted(files)))
        for crate, files in sorted(http_crates.get(lower, {}).items()):
            problems.append(f"{lower} (a lower layer) uses {crate}: " + ", ".join(sorted(files)))
    return modules, edges, problems


def self_test():
    import tempfile
    with tempfile.TemporaryDirectory() as src:
        def write(path, text):
            full = os.path.join(src, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(text)
        write("lib.rs", "pub mod a; pub mod b; pub mod logstore; pub mod params;\n")
        write("a.rs", "use crate::{b::X, logstore};\n// crate::params in a comment\n")
        write("b/mod.rs", "pub fn f() { crate::a::g(); }\n")
        write("logstore/mod.rs", "use crate::params::Timestamp;\nfn h(_: axum::Router) {}\n")
        write("params.rs", "pub struct Timestamp;\n")
        _, edges, problems = problems_of(src)
        assert edges["a"].keys() == {"b", "logstore"}, edges
        assert any(p.startswith("circle among a, b") for p in problems), problems
        assert any("names the HTTP layer's params" in p for p in problems), problems
        assert any("uses axum" in p for p in problems), problems
        write("b/mod.rs", "pub fn f() {}\n")
        write("logstore/mod.rs", "pub fn h() {}\n#[cfg(test)]\nmod t { use crate::params::Timestamp; }\n")
        _, _, problems = problems_of(src)
        assert problems == [], problems
    print("module_graph: self-test passed")
    return 0


def main(argv):
    if "--self-test" in argv:
        return self_test()
    check = "--check" in argv
    dot = "--dot" in argv
    rest = [a for a in argv if not a.startswith("--")]
    src = rest[0] if rest else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    modules, edges, problems = problems_of(src)
    if dot:
        print("digraph janus {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        for a in sorted(modules):
            print(f"{a} -> {', '.join(sorted(edges.get(a, {}))) or '(nothing)'}")
    if problems:
        print("\n" + "\n".join(problems), file=sys.stderr)
    if check and problems:
        print(f"module_graph: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
