"""Dependencies run one way: the owner's code -> the platform; inside it, web and server meet at the seam."""

import ast
from pathlib import Path

import railkit

PLATFORM = Path(railkit.__file__).parent
# Modules both sides use: configuration and logging.
BASE = {"railkit.settings", "railkit.plans", "railkit.project", "railkit.logs", "railkit.request_ids"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PLATFORM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, lazy imports inside functions included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    sources = [path for path in PLATFORM.rglob("*.py") if "tests" not in path.relative_to(PLATFORM).parts]
    return {_module_name(path): _imports(path) for path in sources}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_platform_never_imports_the_project():
    """railkit imports only itself, the standard library and its dependencies: never main or the owner's package."""
    project_modules = {path.stem for path in PLATFORM.parent.glob("*.py")} | {
        path.parent.name for path in PLATFORM.parent.glob("*/__init__.py") if path.parent != PLATFORM
    }
    for module, imports in _graph().items():
        reached = {imported.split(".")[0] for imported in imports} & project_modules
        assert not reached, f"{module} imports {reached}"


def test_the_server_side_never_imports_the_web_side():
    for module, imports in _graph().items():
        if _inside(module, "railkit.cluster"):
            wrong = {i for i in imports if _inside(i, "railkit.web") or _inside(i, "railkit.seam")}
            assert not wrong, f"{module} imports {wrong}"


def test_the_web_side_reads_the_server_side_only_through_the_seam():
    graph = _graph()
    assert any(_inside(imported, "railkit.cluster") for imported in graph["railkit.seam"]), "the seam reads nothing?"
    assert "railkit.seam" in graph["railkit.web.health"]
    for module, imports in graph.items():
        if _inside(module, "railkit.web") or module in BASE:
            wrong = {i for i in imports if _inside(i, "railkit.cluster")}
            assert not wrong, f"{module} imports {wrong}: read it through railkit.seam"


def test_the_base_modules_import_neither_side_at_import_time():
    """Configuration and logging are below both sides (logs reads the seam lazily, inside a function)."""
    for module in BASE:
        path = PLATFORM.parent / (module.replace(".", "/") + ".py")
        top_level = [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ImportFrom)]
        for node in top_level:
            assert node.module not in {"web", "cluster", "seam"}, f"{module} imports .{node.module}"
