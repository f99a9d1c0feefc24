"""The training recipes: lightning_ref/recipes/<dataset>.yaml, the defaults of a run that gives no --config."""

import inspect
from pathlib import Path

import yaml

from lightning_ref.data import ImageDataModule
from manualnet.validate import UsageError

RECIPES = Path(__file__).with_name("recipes")  # one <dataset>.yaml per data set, shipped as package data
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def recipe_for(args: list[str]) -> Path | None:
    """The packaged recipe of the data set that command-line `args` name (--data.dataset, else the data module's
    default), when they name a subcommand and give no --config; else None, as when no recipe has that name (the data
    module then says which data sets exist).

    This is the one look at the command line before LightningCLI parses it: a recipe's values are the parser's
    defaults, so they must be in place before the parse (which --print_config prints, and which the command line
    then overrides)."""
    if not any(a in SUBCOMMANDS for a in args) or any(
        a in ("--config", "-c") or a.startswith("--config=") for a in args
    ):
        return None
    dataset = inspect.signature(ImageDataModule).parameters["dataset"].default
    for a, b in zip(args, [*args[1:], None], strict=True):
        if a == "--data.dataset" and b is not None:
            dataset = b
        elif a.startswith("--data.dataset="):
            dataset = a.split("=", 1)[1]
    return recipe_of(dataset)


def recipe_of(dataset: str) -> Path | None:
    """The packaged recipe of `dataset`, or None when no recipe has that name."""
    recipe = RECIPES / f"{dataset}.yaml"
    return recipe if recipe.is_file() else None


def recipe_defaults(recipe: Path) -> dict[str, object]:
    """The recipe's values as parser defaults: {"data.flip": True, "trainer.max_epochs": 40, ...}."""
    tree = yaml.safe_load(recipe.read_text()) or {}
    if not isinstance(tree, dict):
        raise UsageError(f"recipe: expected a mapping of options in {recipe}, got {type(tree).__name__}")
    return flat(tree)


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"data": {"flip": True}} -> {"data.flip": True}; a class spec ({"class_path": ...}) stays one value."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" not in value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
