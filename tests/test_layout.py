"""The code's layout: apps import one way (offers <- partners <- conversions), no module
imports its way back to itself, and imports sit at the top of modules."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("offers", "partners", "conversions", "affise_proj")
# Function-level imports kept, each with its reason in the function's docstring.
INSIDE_FUNCTIONS = {
    "conversions.apps": "the app registry must be ready",
    "affise_proj.admin_site": "the site is made before the apps' models",
    "affise_proj.results": "the backend loads before Django's apps",
}


def modules() -> dict[str, ast.Module]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = ast.parse(path.read_text())
    return found


def imported(name: str, tree: ast.Module, *, top_only: bool) -> set[str]:
    package = (
        name if name.endswith(("offers", "partners", "conversions")) else name.rsplit(".", 1)[0]
    )
    nodes = tree.body if top_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in APPS}


def test_apps_import_one_way():
    order = {"offers": 0, "partners": 1, "conversions": 2}
    for name, tree in modules().items():
        app = name.split(".")[0]
        if app not in order:
            continue
        for target in imported(name, tree, top_only=False):
            other = target.split(".")[0]
            assert order.get(other, -1) <= order[app], f"{name} imports {target}"


def test_no_module_imports_its_way_back_to_itself():
    trees = modules()
    graph = {
        name: {t for t in imported(name, tree, top_only=False) if t in trees and t != name}
        for name, tree in trees.items()
    }
    # A package's __init__ is imported with any of its modules: not an edge back.
    done, path = set(), []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_imports_are_at_the_top_of_modules():
    for name, tree in modules().items():
        inner = imported(name, tree, top_only=False) - imported(name, tree, top_only=True)
        if name in INSIDE_FUNCTIONS:
            continue
        assert not inner, f"{name} imports {sorted(inner)} inside a function"
