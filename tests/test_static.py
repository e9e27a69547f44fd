"""Static checks as part of the suite: ``ruff check`` and ``ruff format --check`` on the Python code
(``helpers/``, ``tests/``, ``benchmarks/``) and ``mypy`` on ``helpers/`` (0 errors).

Each runs as a subprocess with the configuration in ``pyproject.toml`` (``[tool.ruff]``, ``[tool.mypy]``);
a failure shows the tool's own output.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO


def _tool(name: str) -> list[str]:
    """The tool of this interpreter's environment (``.venv/bin/ruff``), else ``python -m name``."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return [str(exe)]
    if name == "ruff" and shutil.which("ruff"):
        return ["ruff"]
    return [sys.executable, "-m", name]


def _run(argv: list[str], timeout: float = 600) -> None:
    try:
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        pytest.fail(f"{argv[0]} is not installed: pip install -e '.[test]' -c constraints.txt")
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv[:3])} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


#: what ruff checks (the README's lint command); mypy's files are set in [tool.mypy]
PYTHON_DIRS = ("helpers", "tests", "benchmarks")


def test_ruff_check() -> None:
    _run([*_tool("ruff"), "check", *PYTHON_DIRS])


def test_ruff_format() -> None:
    _run([*_tool("ruff"), "format", "--check", *PYTHON_DIRS])


def test_mypy() -> None:
    # files, python_version and the import policy come from [tool.mypy]
    _run([*_tool("mypy")])


# ------------------------------------------------------------------------------------------------
# The flow of imports (docs/design.md, "The rule of the flow")
# ------------------------------------------------------------------------------------------------

#: Stage of every top-level part of ``helpers``: a module may import its own stage or an earlier one.
STAGES: dict[str, int] = {
    **dict.fromkeys(("__init__", "exceptions", "idents", "z85", "home", "procs", "kernels"), 0),
    "storage": 1,
    "catalog": 2,
    "datagen": 3,  # generate() registers the tables it writes in the catalog
    "profiles": 4,
    "sql": 5,
    **dict.fromkeys(("provider", "magic"), 6),
    **dict.fromkeys(("tls", "server"), 7),
    "recipient": 8,
    **dict.fromkeys(
        (
            "mesh",
            "labs",
            "workshop",
            "notebook",
            "batch",
            "jupyter",
            "workspace",
            "tokens_cli",
            "cli",
            "__main__",
        ),
        9,
    ),
}
HELPERS = REPO / "helpers"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _part(module: str) -> str | None:
    """``helpers.catalog.db`` -> ``catalog``; None outside ``helpers``."""
    parts = module.split(".")
    if parts[0] != "helpers":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str], bool]]:
    """``(line, module, names, at_module_level)`` of every absolute import (TYPE_CHECKING ones left out)."""
    found: list[tuple[int, str, list[str], bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: not an import at run time
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.lineno, child.module, [a.name for a in child.names], top))
            elif isinstance(child, ast.Import):
                found.extend((child.lineno, a.name, [], top) for a in child.names)
            visit(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, True)
    return found


def _sources() -> dict[str, ast.Module]:
    return {
        _module_name(p): ast.parse(p.read_text(encoding="utf-8"))
        for p in sorted(HELPERS.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def test_every_part_of_helpers_has_a_stage() -> None:
    parts = {
        p.stem if p.is_file() else p.name for p in HELPERS.iterdir() if p.name != "__pycache__"
    }
    parts = {p for p in parts if (HELPERS / p).is_dir() or (HELPERS / f"{p}.py").is_file()}
    assert parts <= set(STAGES), f"give these a stage in STAGES: {sorted(parts - set(STAGES))}"


def test_no_import_points_to_a_later_stage() -> None:
    wrong = []
    for module, tree in _sources().items():
        here = STAGES.get(_part(module) or "", max(STAGES.values()))  # unknown: see the test above
        for line, target, names, _top in _imports(tree):
            targets = [f"{target}.{n}" for n in names] if target == "helpers" else [target]
            for t in targets:
                part = _part(t)
                if part in STAGES and STAGES[part] > here:
                    wrong.append(f"{module}:{line} imports {t}")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_private_name_of_another_module() -> None:
    wrong = []
    for module, tree in _sources().items():
        for line, target, names, _top in _imports(tree):
            if target.startswith("helpers") and target != module:
                wrong += [f"{module}:{line} {target}.{n}" for n in names if _is_private(n)]
        aliases = {  # local names bound to other helpers modules
            a.asname or a.name: f"{node.module}.{a.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers")
            for a in node.names
        } | {
            a.asname: a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for a in node.names
            if a.name.startswith("helpers") and a.asname
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != module
                and _is_private(node.attr)
            ):
                wrong.append(f"{module}:{node.lineno} {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__") and name.strip("_") != ""


def test_no_import_circle() -> None:
    sources = _sources()
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, tree in sources.items():
        for _line, target, names, top in _imports(tree):
            if not top:
                continue  # imports inside functions run after every module is loaded
            for t in [f"{target}.{n}" for n in names] + [target]:
                if t in sources and t != module:
                    graph[module].add(t)
                    break
    cycle = _find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_recipient_speaks_the_open_protocol_only() -> None:
    allowed = {"exceptions", "idents", "z85", "recipient"}
    wrong = [
        f"{module}:{line} imports {target}"
        for module, tree in _sources().items()
        if module.startswith("helpers.recipient")
        for line, target, names, _top in _imports(tree)
        for t in ([f"{target}.{n}" for n in names] if target == "helpers" else [target])
        if _part(t) is not None and _part(t) not in allowed
    ]
    assert not wrong, "the recipient imports provider-side code:\n" + "\n".join(wrong)
