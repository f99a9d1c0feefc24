"""pyproject.toml declares every third-party package that the project's code imports (manualnet/, lightning_ref/,
scripts/), so that an install from the package alone has them: a package that is only there because another one
pulls it in today can disappear with that one's next release. And scripts/ holds entry points over the packages."""

import ast
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "PIL": "pillow"}
OURS = {"manualnet", "lightning_ref", "conftest"}  # the project's packages
RUNS_INSIDE = {"pytest"}  # manualnet/crosscheck/pytest_plugin.py is only ever imported by pytest itself (a dev extra)


def imported_names(tree: ast.AST) -> set[str]:
    """The top-level names a module's imports name."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_packages() -> set[str]:
    """The top-level names imported by the project's code, standard library excluded."""
    names = set()
    for folder in ("manualnet", "lightning_ref", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            names |= imported_names(ast.parse(path.read_text()))
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS | RUNS_INSIDE}


def test_every_imported_package_is_declared_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in project["dependencies"]
    }
    missing = {n for n in imported_packages() if DISTRIBUTION.get(n, n).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml dependencies: {sorted(missing)}"


def test_scripts_are_entry_points_that_import_the_packages_and_never_edit_sys_path():
    # scripts/ holds entry points only: what they run lives in manualnet/ and lightning_ref/, importable and tested
    # there; so no script imports another, and no file of the project puts a folder on sys.path to find its code.
    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")}
    for path in [
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "manualnet").rglob("*.py"),
        *(REPO / "lightning_ref").rglob("*.py"),
        *(REPO / "tests").glob("*.py"),
    ]:
        tree = ast.parse(path.read_text())
        edits = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and n.attr == "path"
            and isinstance(n.value, ast.Name)
            and n.value.id == "sys"
        ]
        assert not edits, f"{path.relative_to(REPO)}:{edits[0]} uses sys.path"
        if path.parent.name == "scripts":
            imported = imported_names(tree)
            assert not imported & scripts, (
                f"{path.relative_to(REPO)} imports the script(s) {sorted(imported & scripts)}"
            )
