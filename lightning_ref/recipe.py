"""The training recipes: lightning_ref/recipes/<dataset>.yaml, the one a run without --config uses."""

import inspect
import sys
from pathlib import Path

from lightning_ref.data import ImageDataModule

RECIPES = Path(__file__).with_name("recipes")  # one <dataset>.yaml per data set, shipped as package data
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def with_recipe(args: list[str]) -> list[str]:
    """`args` with the packaged recipe of the data set they name (--data.dataset, else the data module's default)
    as the subcommand's first --config, when they give no --config; says on stderr which recipe that is. Unchanged
    when there is no subcommand or no recipe for the name (the data module then says which data sets exist)."""
    sub = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), None)
    if sub is None or any(a in ("--config", "-c") or a.startswith("--config=") for a in args):
        return args
    dataset = inspect.signature(ImageDataModule).parameters["dataset"].default
    for a, b in zip(args, [*args[1:], None], strict=True):
        if a == "--data.dataset" and b is not None:
            dataset = b
        elif a.startswith("--data.dataset="):
            dataset = a.split("=", 1)[1]
    recipe = RECIPES / f"{dataset}.yaml"
    if not recipe.is_file():
        return args
    print(f"manualnet-train: recipe {recipe} (no --config given; --config FILE runs another)", file=sys.stderr)
    return [*args[: sub + 1], "--config", str(recipe), *args[sub + 1 :]]
