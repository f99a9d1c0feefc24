"""The training recipes (lightning_ref/recipes/<dataset>.yaml), and the parser that leaves the options a recipe or a
checkpoint may set unset (None) until the one parse is done, so that the parsed data set picks the recipe and an
option given on the command line or in a config file is told from one left to the recipe, the checkpoint or the code.
"""

import sys
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

from lightning_ref.errors import UsageError

RECIPES = Path(__file__).with_name("recipes")  # one <dataset>.yaml per data set, shipped as package data


def recipe_of(dataset: str) -> Path | None:
    """The packaged recipe of `dataset`, or None when no recipe has that name."""
    recipe = RECIPES / f"{dataset}.yaml"
    return recipe if recipe.is_file() else None


def recipe_defaults(recipe: Path) -> dict[str, object]:
    """The recipe's values: {"data.flip": True, "trainer.max_epochs": 40, ...}."""
    tree = yaml.safe_load(recipe.read_text()) or {}
    if not isinstance(tree, dict):
        raise UsageError(f"recipe: expected a mapping of options in {recipe}, got {type(tree).__name__}")
    return flat(tree)


def recipe_keys() -> set[str]:
    """The options some recipe sets, less data.dataset (which picks the recipe)."""
    return {k for path in RECIPES.glob("*.yaml") for k in recipe_defaults(path)} - {"data.dataset"}


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"data": {"flip": True}} -> {"data.flip": True}; a class spec ({"class_path": ...}) stays one value."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" not in value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def fill_unset(cfg: Namespace, defaults: dict[str, object], use_recipe: bool) -> Path | None:
    """Give each option of `defaults` (key -> the code's default) that the parse left unset (None) its value: the
    recipe's, when `use_recipe` (no --config given) and the recipe of cfg's data set sets it, else the code's. Returns
    the recipe it used, if any."""
    if cfg.get("data.dataset") is None:  # first: the data set picks the recipe
        cfg["data.dataset"] = defaults["data.dataset"]
    recipe = recipe_of(cfg.data.dataset) if use_recipe else None
    values = {**defaults, **(recipe_defaults(recipe) if recipe is not None else {})}
    for key in defaults:
        if cfg.get(key) is None:
            cfg[key] = values[key]
    return recipe


class RecipeParser(LightningArgumentParser):
    """A subcommand's parser whose options in `unset` (key -> the code's default) default to None, filled after the
    parse (fill_unset); --print_config prints them filled, and --help shows the code's defaults."""

    unset: dict[str, object] = {}

    def leave_unset(self, keys: list[str]) -> None:
        """Default these options to None, keeping the code's defaults for fill_unset and the help."""
        self.unset = {k: self.get_default(k) for k in keys}
        self.set_defaults({k: None for k in keys})

    def resolve(self, cfg: Namespace, use_recipe: bool) -> None:
        """fill_unset on this subcommand's `cfg`, saying on stderr which recipe it used."""
        recipe = fill_unset(cfg, self.unset, use_recipe)
        if recipe is not None:
            print(f"manualnet-train: recipe {recipe} (no --config given; --config FILE runs another)", file=sys.stderr)

    def dump(self, cfg: Namespace, *args, **kwargs) -> str:
        # --print_config, which prints inside the parse (an option whose code default is None is None when resolved)
        if any(cfg.get(k) is None and default is not None for k, default in self.unset.items()):
            cfg = cfg.clone()
            self.resolve(cfg, use_recipe=not cfg.get("config"))
        return super().dump(cfg, *args, **kwargs)

    def format_help(self) -> str:
        self.set_defaults(self.unset)
        try:
            return super().format_help()
        finally:
            self.set_defaults({k: None for k in self.unset})
