"""The platform's declared API: what a rendered project imports from railkit is in an `__all__`, and the
project README's "The platform's API" lists exactly those names."""

import ast
import re
from pathlib import Path

import pytest

# The modules an owner may import, each declaring its public names in `__all__`.
DECLARED_MODULES = ("railkit", "railkit.cluster.config", "railkit.db", "railkit.db.testing")
VARIANTS = {
    "default": {},
    "postgres": {"database": "postgres"},
    "gevent-postgres": {"worker_class": "gevent", "database": "postgres"},
}


def declared_names(project: Path) -> dict[str, set[str]]:
    """Each declared module's `__all__`, read from the project's copy of the platform (without importing it)."""
    declared = {}
    for module in DECLARED_MODULES:
        path = project.joinpath(*module.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(source.read_text())
        [names] = [
            ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
        ]
        declared[module] = set(names)
    return declared


def platform_uses(project: Path) -> set[tuple[str, str]]:
    """(module, name) for every name the project's own code takes from railkit: imports and attribute uses."""
    uses = set()
    for path in project.rglob("*.py"):
        if "railkit" in path.relative_to(project).parts[:1] or ".venv" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("railkit"):
                uses.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("railkit") and alias.name not in DECLARED_MODULES:
                        uses.add(tuple(alias.name.rsplit(".", 1)))
            elif isinstance(node, ast.Attribute):
                dotted = _dotted(node)
                declared_module = dotted in DECLARED_MODULES
                if dotted and not declared_module and dotted.rpartition(".")[0] in DECLARED_MODULES:
                    uses.add(tuple(dotted.rsplit(".", 1)))
    return uses


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def readme_names(project: Path) -> set[str]:
    readme = (project / "README.md").read_text()
    section = readme.split("## The platform's API", 1)[1].split("\n## ", 1)[0]
    table = section.split("\n\n", 2)[2].split("\n\n", 1)[0]  # the table, after the section's first paragraph
    return set(re.findall(r"`(railkit(?:\.\w+)+)", table))


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_project_imports_only_the_declared_api(cookies, variant):
    project = cookies.bake(extra_context=VARIANTS[variant]).project_path
    declared = declared_names(project)
    uses = platform_uses(project)
    assert uses, "the check found no use of the platform"
    undeclared = sorted(f"{module}.{name}" for module, name in uses if name not in declared.get(module, set()))
    assert not undeclared, f"the project uses names outside the declared API: {undeclared}"


def test_the_readme_lists_every_declared_name_and_no_other(cookies):
    project = cookies.bake(extra_context={"database": "postgres"}).project_path
    declared = {f"{module}.{name}" for module, names in declared_names(project).items() for name in names}
    # Modules named as modules (`python -m railkit.db migrate`, `railkit.db.testing.postgres`) are not names.
    listed = readme_names(project) - set(DECLARED_MODULES)
    assert listed == declared, f"README only: {sorted(listed - declared)}; __all__ only: {sorted(declared - listed)}"
