"""The package's shape, read from its source with `ast`: who may import whom, no import cycles, a thin CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genzoo
from genzoo import cli

PACKAGE = Path(genzoo.__file__).parent
# Modules that sit above the models: a model file importing one of these would tie models to runs and files.
ABOVE_MODELS = {"genzoo.runs", "genzoo.cli", "genzoo.evaluate", "genzoo.report", "genzoo.commands"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every genzoo module that `path` imports, at module level or inside a function, resolved to module names.

    `from . import x` counts as importing genzoo.x when x is a module, else the package itself.
    Imports of other packages (torch, matplotlib, ...) are not followed: only genzoo's own modules can cycle.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "genzoo"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "genzoo":
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def test_the_import_walk_sees_function_local_and_relative_imports():
    assert "genzoo.models.base" in GRAPH["genzoo.models.gan"]  # from .base import ...
    assert "genzoo.registry" in GRAPH["genzoo.runs"]  # from . import registry
    assert "genzoo.trainer" in GRAPH["genzoo.commands"]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("genzoo.models.")))
def test_models_never_import_runs_cli_evaluate_report_or_commands(name):
    assert not GRAPH[name] & ABOVE_MODELS, f"{name} imports {sorted(GRAPH[name] & ABOVE_MODELS)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules (first = last), or None; depth-first search."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_the_package_modules():
    # The package's __init__ re-exports the API (create, load, train); it is where the graph starts, and no
    # module may import it back (e.g. for __version__), or importing any module would run it half-built.
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_a_planted_cycle():
    planted = {name: set(deps) for name, deps in GRAPH.items()}
    planted["genzoo.models.base"].add("genzoo.runs")
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1] and "genzoo.runs" in cycle


def cli_verbs() -> dict[str, str]:
    """CLI verb -> the name of the cmd_* function it runs, read from the parser."""
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return {verb: p.get_default("fn").__name__ for verb, p in sub.choices.items()}


def test_every_cli_verb_is_one_call_of_a_library_function():
    tree = ast.parse(Path(cli.__file__).read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    verbs = cli_verbs()
    assert {"sample", "reconstruct", "denoise", "interpolate", "complete", "gmm-demo", "train"} <= set(verbs)
    for verb, fn_name in verbs.items():
        body = functions[fn_name].body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # a docstring
        assert len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call), (
            f"genzoo {verb}: {fn_name} must be `return library_function(args...)`, one statement")
        called = body[0].value.func
        assert isinstance(called, (ast.Name, ast.Attribute)), f"genzoo {verb}: {fn_name} calls {ast.dump(called)}"
        callee = called.attr if isinstance(called, ast.Attribute) else called.id
        assert not callee.startswith("cmd_"), f"genzoo {verb}: {fn_name} forwards to another cmd_ function"
        # The arguments only pass args' values on (attributes, at most a `not`), no logic of their own.
        for arg in [*body[0].value.args, *(k.value for k in body[0].value.keywords)]:
            plain = arg.operand if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.Not) else arg
            assert isinstance(plain, (ast.Attribute, ast.Name)), f"genzoo {verb}: argument {ast.unparse(arg)}"
