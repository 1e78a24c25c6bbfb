"""The layout of docs/design.md 2, checked from the sources (ast, nothing imported): the service
side never imports the offline `lab` package, no two modules of the product import each other
(directly or round a longer cycle), and no file outgrows 500 lines outside generated code.

Each checker takes a root and package names, so the tests below also prove on a crafted tree in
tmp_path that every check fails when it should."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("findlora", "findlora_client", "bot", "inference_service", "db", "lab")
SERVICE_PACKAGES = ("inference_service", "db", "findlora_client", "bot")  # never import lab
OFFLINE_PACKAGE = "lab"
MAX_LINES = 500


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name, as written (a module, or a module's attribute)
    path: Path
    line: int


def package_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the packages that exist under root."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import of the module, wherever it is written (module level, functions,
    TYPE_CHECKING blocks), relative ones resolved. `from a import b` gives a.b: the module a.b
    when there is one, else the attribute b of a (import_graph tells them apart)."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [
                Import(base if a.name == "*" else f"{base}.{a.name}", path, node.lineno) for a in node.names
            ]
    return found


def lab_imports(root: Path, packages: Sequence[str], offline: str = OFFLINE_PACKAGE) -> list[str]:
    """'file:line imports X' for every import of the offline package from the given packages."""
    return [
        f"{i.path.relative_to(root)}:{i.line} imports {i.target}"
        for name, path in package_modules(root, packages).items()
        for i in imports_of(name, path)
        if i.target == offline or i.target.startswith(f"{offline}.")
    ]


def import_graph(root: Path, packages: Sequence[str]) -> dict[str, set[str]]:
    """Module -> the modules of the packages it imports (the most specific one each import names)."""
    modules = package_modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for i in imports_of(name, path):
            target = i.target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module: each is at least one import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a -> b -> ... -> a."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def import_cycles(root: Path, packages: Sequence[str]) -> list[str]:
    graph = import_graph(root, packages)
    return [
        f"{' -> '.join(one_cycle(graph, component))} (cycle among {len(component)} modules: "
        f"{', '.join(component)})"
        for component in strongly_connected(graph)
    ]


def long_files(root: Path, limit: int = MAX_LINES) -> list[str]:
    """'file: N lines' for every .py over the limit, generated protobuf code and hidden folders
    (.git, .venv, ...) left out."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if "_pb2" in path.name or any(part.startswith(".") for part in relative.parts):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{relative}: {lines} lines")
    return found


# --- the repository -------------------------------------------------------------------------


def test_no_service_module_imports_lab() -> None:
    found = lab_imports(ROOT, SERVICE_PACKAGES)
    assert not found, "the service side imports the offline lab package:\n" + "\n".join(found)


def test_no_import_cycles_between_modules() -> None:
    found = import_cycles(ROOT, PRODUCT_PACKAGES)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_file_over_500_lines_outside_generated_code() -> None:
    found = long_files(ROOT)
    assert not found, f"files over {MAX_LINES} lines (split them by concern):\n" + "\n".join(found)


# --- each check fails when it should -------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_lab_imports_are_found_at_any_depth_and_in_any_form(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "svc/__init__.py": "",
            "svc/top.py": "import lab.bench\n",
            "svc/inner.py": "def later():\n    from lab import zoo\n    return zoo\n",
            "svc/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lab\n",
            "svc/fine.py": "import laboratory\nfrom svc import top\n",
            "lab/__init__.py": "",
        },
    )
    assert sorted(lab_imports(root, ["svc"])) == [
        "svc/inner.py:2 imports lab.zoo",
        "svc/top.py:1 imports lab.bench",
        "svc/typed.py:3 imports lab",
    ]


def test_cycles_are_found_through_relative_function_level_and_type_checking_imports(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path,
        {
            "one/__init__.py": "",
            "one/a.py": "from .b import thing\n",
            "one/b.py": "def f():\n    from one.sub import c\n    return c\n",
            "one/sub/__init__.py": "",
            "one/sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n",
            "one/d.py": "from one import a\n",  # imports into the cycle, is not part of it
            "two/__init__.py": "",
            "two/e.py": "import two.f\n",
            "two/f.py": "from . import e\n",
        },
    )
    assert import_cycles(root, ["one", "two"]) == [
        "one.a -> one.b -> one.sub.c -> one.a (cycle among 3 modules: one.a, one.b, one.sub.c)",
        "two.e -> two.f -> two.e (cycle among 2 modules: two.e, two.f)",
    ]
    assert import_cycles(root, ["one"])[0].startswith("one.a -> one.b")
    acyclic = write(tmp_path / "acyclic", {"p/__init__.py": "", "p/x.py": "from p import y\n", "p/y.py": ""})
    assert import_cycles(acyclic, ["p"]) == []


def test_files_over_the_limit_are_found_except_generated_and_hidden(tmp_path: Path) -> None:
    long = "x = 1\n" * (MAX_LINES + 1)
    root = write(
        tmp_path,
        {
            "pkg/big.py": long,
            "pkg/exact.py": "x = 1\n" * MAX_LINES,
            "protos/big_pb2.py": long,
            ".venv/lib/big.py": long,
        },
    )
    assert long_files(root) == [f"pkg/big.py: {MAX_LINES + 1} lines"]
