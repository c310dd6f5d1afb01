"""The package's import graph: cycles, upward imports (against the layer table) and code-size figures.

``python -m scripts.import_graph`` prints the figures; ``tests/unit/test_architecture.py`` asserts them.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lua_core", "nodes")

# Floors, lowest first.  A module may import only from its own floor or the floors below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("lua_core.errors", "lua_core.locations", "lua_core.dtypes")),
    ("model", ("lua_core.families", "lua_core.model", "lua_core.tae")),
    ("runtime", ("lua_core.checkpoints", "lua_core.engine", "lua_core.api")),
    ("metrics", ("lua_core.metrics",)),
    ("toolkit", ("lua_core.toolkit",)),
    ("autoencoders", ("lua_core.vae_backends",)),
    ("tooling", ("lua_core.train", "lua_core.eval")),
    ("bench", ("lua_core.bench",)),
    ("comfyui", ("nodes", "__init__")),
)
RUNTIME = ("lua_core.errors", "lua_core.locations", "lua_core.dtypes",
           "lua_core.families", "lua_core.model", "lua_core.tae",
           "lua_core.checkpoints", "lua_core.engine", "lua_core.api")
# The runtime imports neither ComfyUI nor any tooling (the toolkit included: it is not shipped).
RUNTIME_MUST_NOT_IMPORT = ("comfy", "folder_paths", "comfy_api", "lua_core.train", "lua_core.eval", "lua_core.bench",
                           "lua_core.metrics", "lua_core.toolkit", "nodes")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    yield ROOT / "__init__.py"
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def imports(path: Path) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file (function-local imports count)."""
    mod, tree = module_name(path), ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(resolve(mod, path.name == "__init__.py", node))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def graph() -> dict[str, set[str]]:
    """Internal edges: module -> modules of this repository it imports."""
    files = {module_name(p): p for p in source_files()}
    edges: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets = set()
        for name in imports(path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != mod and not (mod.startswith(name + ".") and files[name].name == "__init__.py"):
                targets.add(name)
        edges[mod] = targets
    return edges


def external(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """Modules under ``prefixes`` -> the names they import that start with a forbidden root."""
    out: dict[str, set[str]] = {}
    for p in source_files():
        mod = module_name(p)
        if mod != "lua_core" and not any(mod == x or mod.startswith(x + ".") for x in prefixes):
            continue
        bad = {n for n in imports(p) if any(n == f or n.startswith(f + ".") for f in RUNTIME_MUST_NOT_IMPORT)}
        if bad:
            out[mod] = bad
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer_of(mod: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    if level < 0 and mod == "lua_core":
        return LAYERS.index(next(x for x in LAYERS if x[0] == "runtime"))
    return level


def unplaced(edges: dict[str, set[str]]) -> list[str]:
    """Modules that sit on no floor of :data:`LAYERS`."""
    return sorted(m for m in edges if layer_of(m) < 0)


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges from a lower floor to a higher one, or between train and eval (side by side)."""
    bad = []
    for a, targets in edges.items():
        for b in targets:
            la, lb = layer_of(a), layer_of(b)
            side = {a.split(".")[:2][-1], b.split(".")[:2][-1]} == {"train", "eval"}
            if lb > la or side:
                bad.append((a, b))
    return sorted(bad)


def largest() -> tuple[tuple[int, str], tuple[int, str]]:
    """(lines, file) of the largest source file and (lines, qualified name) of the longest function."""
    files = list(source_files()) + sorted((ROOT / "scripts").glob("*.py"))
    big_file = max((len(p.read_text().splitlines()), str(p.relative_to(ROOT))) for p in files)
    big_fn = (0, "")
    for p in files:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                big_fn = max(big_fn, (n, f"{p.relative_to(ROOT)}:{node.name}"))
    return big_file, big_fn


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    edges = graph()
    cyc, up, ext = cycles(edges), upward(edges), external(RUNTIME)
    print(f"modules: {len(edges)}, internal imports: {sum(map(len, edges.values()))}")
    print(f"import cycles: {len(cyc)}")
    for c in cyc:
        print("  " + " <-> ".join(c))
    print(f"modules on no floor: {len(unplaced(edges))} {unplaced(edges) or ''}")
    print(f"upward imports: {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    print(f"runtime modules importing ComfyUI or tooling: {len(ext)}")
    for m, names in sorted(ext.items()):
        print(f"  {m}: {', '.join(sorted(names))}")
    (fl, fname), (gl, gname) = largest()
    print(f"largest file: {fname} ({fl} lines); longest function: {gname} ({gl} lines)")


if __name__ == "__main__":
    main()
