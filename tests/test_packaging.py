"""pyproject.toml declares every third-party package that the project's code imports (manualnet/, lightning_ref/,
scripts/), so that an install from the package alone has them: a package that is only there because another one
pulls it in today can disappear with that one's next release."""

import ast
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "PIL": "pillow"}
# the project's packages, and the scripts' modules (a script imports those beside it: its folder is on its path)
OURS = {"manualnet", "lightning_ref", "conftest"} | {p.stem for p in (REPO / "scripts").glob("*.py")}
RUNS_INSIDE = {"pytest"}  # manualnet/crosscheck/pytest_plugin.py is only ever imported by pytest itself (a dev extra)


def imported_packages() -> set[str]:
    """The top-level names imported by the project's code, standard library excluded."""
    names = set()
    for folder in ("manualnet", "lightning_ref", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS | RUNS_INSIDE}


def test_every_imported_package_is_declared_in_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        d.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in project["dependencies"]
    }
    missing = {n for n in imported_packages() if DISTRIBUTION.get(n, n).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml dependencies: {sorted(missing)}"
