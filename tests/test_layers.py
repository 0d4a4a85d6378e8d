"""The package's layering, checked on its source (AST, nothing imported): no import cycle
(function-level imports included), no private name imported across modules, and the core
knows no study."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"

# the core: models, the VLM and its pieces, the trainer and the scorer; they may not import
# a study, an analysis or a command-line module
CORE = ("interp.models", "interp.vlm", "interp.sequence", "interp.projector", "interp.features",
        "interp.train_projector", "interp.calibration", "interp.scoring", "interp.examples", "interp.io",
        "interp.paths")
HIGHER = ("interp.studies", "interp.analysis", "interp.binding", "interp.train", "interp.evaluate", "interp.run",
          "interp.sweep", "interp.patch", "interp.analyze", "interp.alignment", "interp.sae", "interp.task_vectors", "interp.report")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of the package's own code."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "interp"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "interp":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                out.append((full, "", node.lineno) if full in known else (base, a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    g = {}
    for name, path in mods.items():
        deps = set()
        for target, _, _ in imports(name, path, known):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                deps.add(target)
        g[name] = deps
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in g:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_private_name_imported_across_modules():
    mods = modules()
    bad = [f"{name}:{line} imports {name_} from {target}" for name, path in mods.items()
           for target, name_, line in imports(name, path, set(mods)) if name_.startswith("_")]
    assert bad == []


# function-level imports of the package's own modules that buy something, with the reason
DEFERRED = {("interp.studies.binding.interventions", "interp.analysis.probes"):
            "scikit-learn (~3 s); the binding config imports interventions and --dry-run loads nothing heavy"}


def function_level_imports(name: str, path: Path) -> set[tuple[str, str]]:
    """(module, imported module) for every import of the package's own code inside a function."""
    tree = ast.parse(path.read_text())
    out = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("interp")):
                    out.add((name, node.module or ""))
                elif isinstance(node, ast.Import):
                    out.update((name, a.name) for a in node.names if a.name.split(".")[0] == "interp")
    return out


def test_own_modules_are_imported_at_the_top_except_the_listed_deferrals():
    found = set().union(*(function_level_imports(n, p) for n, p in modules().items()))
    assert found == set(DEFERRED)


def undocumented_function_level_imports(path: Path) -> list[str]:
    """Imports inside a function without a ``# deferred: <reason>`` on their line (or on the
    import line just above, for a block of two)."""
    lines = path.read_text().splitlines()
    bad = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                    block = above.startswith(("import ", "from ")) and "# deferred:" in above
                    if "# deferred:" not in here and not block:
                        bad.append(f"{path}:{node.lineno}: {here.strip()}")
    return sorted(set(bad))


def test_every_function_level_import_says_why_it_is_deferred():
    assert [b for p in modules().values() for b in undocumented_function_level_imports(p)] == []


def test_the_reason_check_catches_a_bare_deferred_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import json\n    import re  # deferred: a reason\n")
    assert undocumented_function_level_imports(f) == [f"{f}:2: import json"]


def test_the_core_knows_no_study():
    g = graph()
    assert all(any(_under(m, (c,)) for m in g) for c in CORE + HIGHER)  # every name is a real module
    bad = [f"{m} imports {d}" for m, deps in g.items() if _under(m, CORE) for d in deps if _under(d, HIGHER)]
    assert bad == []


# ARCHITECTURE.md's layers: a module may import its own layer and lower ones
LAYERS = [
    ("interp.io", "interp.cachecheck", "interp.paths", "interp.configfile", "interp.runlock", "interp.metrics", "interp.schedule", "interp.plots",
     "interp.distributed", "interp.pages"),
    ("interp.models",),
    ("interp.sequence", "interp.projector", "interp.vlm", "interp.features", "interp.examples", "interp.train_projector",
     "interp.scoring", "interp.calibration", "interp.diagnostics", "interp.warmstart", "interp.remote"),
    ("interp.data",),
    ("interp.analysis",),
    ("interp.studies",),
    ("interp.run", "interp.sweep", "interp.train", "interp.evaluate", "interp.patch", "interp.analyze",
     "interp.alignment", "interp.sae", "interp.task_vectors", "interp.report", "interp.binding", "interp.models.__main__",
     "interp.data.build"),
]


def layer_of(module: str) -> int | None:
    best = None  # the longest matching prefix decides (interp.models.__main__ is a command)
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if _under(module, (p,)) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def test_every_module_has_a_layer_and_imports_only_its_own_and_lower_layers():
    g = graph()
    unplaced = [m for m in g if m != "interp" and layer_of(m) is None]
    assert unplaced == []
    bad = [f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})" for m, deps in g.items() if m != "interp"
           for d in deps if d != "interp" and layer_of(d) > layer_of(m)]
    assert bad == []
