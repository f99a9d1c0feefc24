"""The training recipes (lightning_ref/recipes/<dataset>.yaml): one per data set, shipped as package data, picked by
manualnet-train when no --config is given (and said so), overridden by the command line, each holding only what is
its data set's own (no code default restated), and refused with one line when a key is unknown (the commands the
docs quote: tests/test_docs.py)."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from lightning_ref.cli import main
from lightning_ref.data import SPECS
from lightning_ref.recipe import RECIPES, flat

REPO = Path(__file__).resolve().parents[1]


def resolved(args: list[str], capsys) -> tuple[dict[str, object], str]:
    """The flattened config manualnet-train resolves from args (--print_config), and what it said on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr()
    return flat(yaml.safe_load(out.out)), out.err


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])  # main() parses its args list, not pytest's
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("dataset", list(SPECS))
def test_every_data_set_has_a_recipe_that_names_it_and_sets_its_epochs(dataset):
    recipe = flat(yaml.safe_load((RECIPES / f"{dataset}.yaml").read_text()))
    assert recipe["data.dataset"] == dataset
    assert isinstance(recipe["trainer.max_epochs"], int) and 1 <= recipe["trainer.max_epochs"] <= 200


def test_the_recipes_are_package_data_so_a_wheel_carries_them():
    section = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    patterns = re.findall(r'"([^"]+)"', re.search(r"^lightning_ref = \[(.*)\]", section, re.M).group(1))
    shipped = {p for pattern in patterns for p in (REPO / "lightning_ref").glob(pattern)}
    assert {RECIPES / f"{name}.yaml" for name in SPECS} <= shipped
    assert sorted(RECIPES.glob("*")) == sorted(p for p in shipped if p.parent == RECIPES)  # nothing else, none left out
    # and every other data file the package reads (the benchmark's goals table)
    assert {p for p in (REPO / "lightning_ref").rglob("*.yaml")} == shipped


@pytest.mark.parametrize("dataset", list(SPECS))
def test_fit_without_config_runs_its_data_sets_recipe_and_says_which(dataset, capsys):
    config, err = resolved(["fit", "--data.dataset", dataset], capsys)
    recipe = flat(yaml.safe_load((RECIPES / f"{dataset}.yaml").read_text()))
    assert {k: config[k] for k in recipe} == recipe
    assert f"manualnet-train: recipe {RECIPES / f'{dataset}.yaml'}" in err


def test_fit_without_any_option_runs_the_cifar10_recipe(capsys):
    config, err = resolved(["fit"], capsys)
    assert config["data.dataset"] == "cifar10" and str(RECIPES / "cifar10.yaml") in err
    assert (
        config["trainer.max_epochs"]
        == flat(yaml.safe_load((RECIPES / "cifar10.yaml").read_text()))["trainer.max_epochs"]
    )


def test_command_line_options_override_the_recipe_and_a_config_replaces_it(tmp_path, capsys):
    config, _ = resolved(["fit", "--data.dataset=fashion-mnist", "--trainer.max_epochs", "3"], capsys)
    assert config["trainer.max_epochs"] == 3 and config["data.dataset"] == "fashion-mnist"
    own = tmp_path / "own.yaml"
    own.write_text("data:\n  dataset: mnist\ntrainer:\n  max_epochs: 7\n")
    config, err = resolved(["fit", "--config", str(own)], capsys)
    assert config["trainer.max_epochs"] == 7 and "recipe" not in err


def test_the_recipe_is_the_parsed_data_sets_wherever_the_data_set_is_given(tmp_path, capsys):
    """The recipe follows the data set the parse found: also from a group config file (--data FILE) or the
    key=value form, which a look at the command line would miss."""
    data = tmp_path / "data.yaml"
    data.write_text("dataset: mnist\n")
    for args in (["fit", "--data", str(data)], ["fit", "--data.dataset=mnist"], ["test", "--data.dataset", "mnist"]):
        config, err = resolved(args, capsys)
        assert config["trainer.max_epochs"] == 30 and config["model.hidden"] == 1024  # mnist.yaml's
        assert f"recipe {RECIPES / 'mnist.yaml'}" in err


def test_a_run_without_config_trains_with_its_recipes_values_and_the_options_given(tmp_path, capsys):
    """Not only --print_config: the fit itself runs synthetic.yaml's 5 epochs and flip, with the hidden size given."""
    small = ["--data.synthetic_train", "300", "--data.synthetic_test", "60", "--data.val_size", "60"]
    main(["fit", "--data.dataset", "synthetic", *small, "--data.batch_size", "100", "--model.hidden", "4",
          "--trainer.enable_progress_bar", "false"])  # fmt: skip
    out = capsys.readouterr()
    run = Path(out.out.strip().splitlines()[-1].removeprefix("metrics: ")).parent
    metrics = json.loads((run / "metrics.json").read_text())
    config = flat(yaml.safe_load((run / "config.yaml").read_text()))
    recipe = flat(yaml.safe_load((RECIPES / "synthetic.yaml").read_text()))
    assert len(metrics["history"]) == recipe["trainer.max_epochs"] == 5 and metrics["hidden"] == 4
    assert config["data.flip"] is recipe["data.flip"] is True and config["model.hidden"] == 4
    assert f"recipe {RECIPES / 'synthetic.yaml'}" in out.err


def test_an_option_given_at_its_code_default_still_overrides_the_recipe(capsys):
    """fashion-mnist.yaml sets hidden 1024; --model.hidden 2048 (the code's default) is the user's choice."""
    config, _ = resolved(["fit", "--data.dataset", "fashion-mnist", "--model.hidden", "2048"], capsys)
    assert config["model.hidden"] == 2048 and config["trainer.max_epochs"] == 60


def test_help_shows_the_code_defaults_of_the_options_a_recipe_sets(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    # each option's entry: its description, then its type and default (the code's, not a recipe's)
    assert re.search(r"--model\.hidden HIDDEN (?:(?!--)[^)])*\(type: int, default: 2048\)", out)
    assert re.search(r"--data\.flip \{true,false\} (?:(?! --).)*?\(type: bool, default: False\)", out)
    assert "--print_config shows the values a run gets" in out


@pytest.mark.parametrize("dataset", list(SPECS))
def test_no_recipe_restates_a_code_default(dataset, tmp_path, capsys):
    """Each default lives in one place: a recipe only holds values that differ from the code's (and its data set)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"data:\n  dataset: {dataset}\n")
    defaults, _ = resolved(["fit", "--config", str(empty)], capsys)
    recipe = flat(yaml.safe_load((RECIPES / f"{dataset}.yaml").read_text()))
    restated = {k: v for k, v in recipe.items() if k != "data.dataset" and defaults[k] == v}
    assert restated == {}


def test_a_recipe_with_an_unknown_key_exits_2_naming_it_before_any_run(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES / "mnist.yaml").read_text() + "model:\n  hiden: 64\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("manualnet-train: error: ") and "'model.hiden'" in err[0]
    assert "(the model options: impl, hidden, seed, optimizer, lr," in err[0]  # the keys it could have been
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, listed",
    [
        (["--model.hiden", "64"], "(the model options: impl, hidden, seed,"),
        (["--data.flop", "true"], "(the data options: dataset, root, batch_size,"),
        (["--modle.hidden", "64"], "(expected a key under one of: trainer, model, data, checkpoint, crosscheck)"),
    ],
)
def test_an_unknown_option_exits_2_listing_the_valid_keys(args, listed, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--data.dataset", "synthetic", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: ") and listed in err[-1] and args[0] in err[-1]
