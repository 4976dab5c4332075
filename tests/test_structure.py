"""The package's shape, read from its source with `ast`: who may import whom, no import cycles, a thin CLI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import genzoo
from genzoo import catalog, cli

PACKAGE = Path(genzoo.__file__).parent


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
# Modules that sit above the models: a model file importing one of these would tie models to runs and files.
ABOVE_MODELS = {m for m in MODULES if m in ("genzoo.runs", "genzoo.cli")
                or any(m == p or m.startswith(p + ".") for p in ("genzoo.commands", "genzoo.evaluation",
                                                                  "genzoo.showcase"))}
GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}
# The registry imports the classes the model table names by their module's name: edges the walk cannot see.
GRAPH["genzoo.registry"] |= {f"genzoo.models.{entry.target.partition(':')[0]}" for entry in catalog.MODELS.values()}


def test_the_registry_imports_every_model_module_of_the_table():
    assert "genzoo.models.gan" in GRAPH["genzoo.registry"] and "genzoo.models.pixelcnn" in GRAPH["genzoo.registry"]
    assert all(f"genzoo.models.{e.target.partition(':')[0]}" in MODULES for e in catalog.MODELS.values())


def test_the_packages_above_the_models_are_whole():
    assert {"genzoo.evaluation", "genzoo.evaluation.scoring", "genzoo.evaluation.evaluate", "genzoo.runs",
            "genzoo.showcase.report"} <= ABOVE_MODELS
    assert "genzoo.metrics" not in ABOVE_MODELS and "genzoo.training.loop" not in ABOVE_MODELS


def test_the_import_walk_sees_function_local_and_relative_imports():
    assert "genzoo.models.base" in GRAPH["genzoo.models.gan"]  # from .base import ...
    assert "genzoo.registry" in GRAPH["genzoo.runs"]  # from . import registry
    assert "genzoo.trainer" in GRAPH["genzoo.commands.train_run"]


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
        if len(body) == 2 and isinstance(body[0], ast.ImportFrom):
            body = body[1:]  # the library module imported when the verb runs: `genzoo list` needs no torch
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


# ---------------------------------------------------------------------------- asking, not looking: names and classes


def imported_names(tree: ast.AST, name: str, path: Path) -> dict[str, tuple[str, str | None]]:
    """Local name -> (genzoo module, the name imported from it; None where the local name is the module itself)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found[alias.asname or alias.name] = (alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    found[alias.asname or alias.name] = (f"{target}.{alias.name}", None)
                elif target in MODULES:
                    found[alias.asname or alias.name] = (target, alias.name)
    return found


def private_imports(name: str, path: Path, source: str | None = None) -> list[str]:
    """`from genzoo.x import _private` and `x._private` (x a genzoo module) in module `name`, as lines to show."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    names = imported_names(tree, name, path)
    found = [f"{path.name}: from {module} import {imported}" for module, imported in names.values()
             if imported and imported.startswith("_") and not imported.startswith("__") and module != name]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names
                and names[node.value.id][1] is None and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def model_class_checks(name: str, path: Path, source: str | None = None) -> list[str]:
    """isinstance/issubclass calls of module `name` whose class comes from genzoo.models (not an exception)."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    names = imported_names(tree, name, path)

    def model_class(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name) and node.id in names and names[node.id][1]:
            module, attr = names[node.id]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names
              and names[node.value.id][1] is None):
            module, attr = names[node.value.id][0], node.attr
        else:
            return None
        if not module.startswith("genzoo.models"):
            return None
        obj = getattr(importlib.import_module(module), attr, None)
        return attr if isinstance(obj, type) and not issubclass(obj, BaseException) else None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("isinstance",
                                                                                                 "issubclass"):
            classes = node.args[1].elts if len(node.args) > 1 and isinstance(node.args[1], ast.Tuple) else \
                node.args[1:2]
            found += [f"{path.name}:{node.lineno}: {node.func.id}(..., {hit})" for c in classes
                      if (hit := model_class(c))]
    return found


def reexported_imports(name: str, path: Path, source: str | None = None) -> list[str]:
    """Names module `name` imports from a genzoo module (not a package) that only imports them itself."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    found = []
    for module, imported in imported_names(tree, name, path).values():
        if imported is None or module == name or MODULES[module].name == "__init__.py" or imported == "*":
            continue
        if imported not in DEFINED[module]:
            found.append(f"{path.name}: {imported} from {module}, which imports it from elsewhere")
    return found


def top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """A module's statements, those inside top-level `try`/`if` blocks included (an optional import's fallback)."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.Try):
            out += top_level(node.body + [s for h in node.handlers for s in h.body] + node.orelse + node.finalbody)
        elif isinstance(node, ast.If):
            out += top_level(node.body + node.orelse)
    return out


def defined_names(path: Path) -> set[str]:
    """The names a module binds itself at its top level: functions, classes, assignments (an optional dependency
    imported in a `try` whose fallback assigns the name counts as the module's own)."""
    names = set()
    for node in top_level(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def unresolved_imports(name: str, path: Path, source: str | None = None) -> list[str]:
    """genzoo imports of module `name` (at any depth, relative or absolute) whose module does not exist: a moved
    module's importer that was missed fails only when that line runs, often inside a function."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "genzoo"]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            targets = [target] if target.split(".")[0] == "genzoo" else []
        else:
            continue
        found += [f"{path.name}:{node.lineno}: {t}" for t in targets if t not in MODULES]
    return found


DEFINED = {name: defined_names(path) for name, path in MODULES.items()}
OUTSIDE_MODELS = sorted(m for m in MODULES if not m.startswith("genzoo.models"))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_genzoo_import_names_a_module_that_exists(name):
    assert not unresolved_imports(name, MODULES[name])


def test_the_import_check_finds_a_missed_importer():
    pairs = MODULES["genzoo.commands.pairs"]
    planted = "def f():\n    from .evaluation.evaluator import load_evaluator\n    from ..evaluation import scoring\n"
    assert unresolved_imports("genzoo.commands.pairs", pairs, planted) == [
        "pairs.py:2: genzoo.commands.evaluation.evaluator"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_modules_private_name(name):
    assert not private_imports(name, MODULES[name]), "make the helper public where it is shared, or move it"


@pytest.mark.parametrize("name", OUTSIDE_MODELS)
def test_outside_the_models_nothing_asks_a_model_which_class_it_is(name):
    assert not model_class_checks(name, MODULES[name]), "ask what it can do: a capability flag of models/base.py"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_names_are_imported_from_the_module_that_defines_them(name):
    assert not reexported_imports(name, MODULES[name]), "import it from where it is defined"


def test_the_ast_checks_find_planted_faults():
    serve = MODULES["genzoo.serve.app"]
    planted = ("from ..showcase.report import _esc\nfrom ..showcase import report\nfrom ..models.vae import VAE\n"
               "from ..models import gan\nfrom ..models.base import CapabilityError\n"
               "from ..trainer import resolve_device\n"
               "report._Run\nisinstance(m, VAE)\nissubclass(c, (int, gan.GAN))\nisinstance(e, CapabilityError)\n")
    assert private_imports("genzoo.serve.app", serve, planted) == [
        "app.py: from genzoo.showcase.report import _esc", "app.py:7: report._Run"]
    assert model_class_checks("genzoo.serve.app", serve, planted) == [
        "app.py:8: isinstance(..., VAE)", "app.py:9: issubclass(..., GAN)"]
    assert reexported_imports("genzoo.serve.app", serve, planted) == [
        "app.py: resolve_device from genzoo.trainer, which imports it from elsewhere"]


def long_functions(root: Path, limit: int = 60) -> list[str]:
    """Functions of the .py files under `root` longer than `limit` lines, as "file:line name (n lines)"."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_the_package_is_longer_than_60_lines(tmp_path):
    assert long_functions(PACKAGE) == []
    planted = tmp_path / "long.py"  # the check itself sees a long one
    planted.write_text("def f():\n" + "    x = 1\n" * 60)
    assert long_functions(tmp_path) == ["long.py:1 f (61 lines)"]
