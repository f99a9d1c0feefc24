"""The private Lightning names this project still uses (lightning_ref/lightning_private.py) exist and are still
called where the project relies on them, so that a Lightning release that renames or drops one fails here, naming
it, instead of breaking training with no test noticing; and no other module uses a private Lightning name."""

import inspect
import re
from pathlib import Path

import lightning
import pytest
from lightning.pytorch.cli import LightningCLI

from lightning_ref.lightning_private import PRIVATE_NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("owner, name", PRIVATE_NAMES, ids=[f"{o.__name__}.{n}" for o, n in PRIVATE_NAMES])
def test_each_private_lightning_name_still_exists(owner, name):
    assert hasattr(owner, name), (
        f"lightning {lightning.__version__}: {owner.__qualname__}.{name} is gone; lightning_ref/lightning_private.py "
        "overrides it (see its docstring for what it does and what to use instead)"
    )


def test_lightning_cli_still_calls_the_overridden_private_methods():
    init = inspect.getsource(LightningCLI.__init__)
    assert "self._parse_ckpt_path()" in init, (
        f"lightning {lightning.__version__}: LightningCLI.__init__ no longer calls _parse_ckpt_path"
    )
    add = inspect.getsource(LightningCLI._add_subcommands)
    assert "self._prepare_subcommand_parser(" in add, (
        f"lightning {lightning.__version__}: LightningCLI._add_subcommands no longer calls _prepare_subcommand_parser"
    )
    signature = inspect.signature(LightningCLI._prepare_subcommand_parser)
    assert list(signature.parameters)[:3] == ["self", "klass", "subcommand"], (
        f"lightning {lightning.__version__}: LightningCLI._prepare_subcommand_parser{signature} changed"
    )


def test_no_other_module_uses_a_private_lightning_name():
    """`lightning.*._name` imports or `._name` attribute uses of Lightning objects live only in lightning_private.py."""
    names = "_load|_parse_ckpt_path|_prepare_subcommand_parser|_on_before_step|_on_after_step|_save_last_checkpoint"
    names += r"|_monitor_candidates|_should_\w+|_trainer|_lightning_optimizers|_subcommand_parsers"
    pattern = re.compile(rf"from lightning[\w.]* import [^\n]*\b_[a-z]\w*|\.({names})\b")
    found = []
    for path in sorted((ROOT / "lightning_ref").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        if path.name == "lightning_private.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []


def test_pyproject_pins_the_lightning_releases_tested():
    text = (ROOT / "pyproject.toml").read_text()
    pin = re.search(r'"lightning([^"]*)"', text).group(1)
    major, minor = lightning.__version__.split(".")[:2]
    assert pin == f">={major}.{minor},<{major}.{int(minor) + 1}", pin
