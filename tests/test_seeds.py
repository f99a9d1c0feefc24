"""One seed repeats a run: seed_everything sets model.seed (the init) and data.seed (the validation split, the batch
order) unless they are given on their own, and a run from a checkpoint keeps the checkpoint's seed."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_ref.cli import ManualNetCLI, main
from manualnet.module import TwoLayerNet

SYNTH = [
    "--data.dataset",
    "synthetic",
    "--data.synthetic_train",
    "300",
    "--data.val_size",
    "100",
    "--data.batch_size",
    "50",
]
SMALL = [*SYNTH, "--model.hidden", "8", "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """tmp_path as the working directory (runs/ lands there), with sys.argv holding no pytest options."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    return tmp_path


def seeds_of(run: Path) -> tuple[int, int, int]:
    """(seed_everything, model.seed, data.seed) as the run's saved config.yaml holds them."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return cfg["seed_everything"], cfg["model"]["seed"], cfg["data"]["seed"]


@pytest.mark.parametrize(
    "given, want",
    [
        ([], (0, 0, 0)),
        (["--seed_everything", "3"], (3, 3, 3)),
        (["--seed_everything", "3", "--model.seed", "5"], (3, 5, 3)),
        (["--seed_everything", "3", "--data.seed", "0"], (3, 3, 0)),  # given on its own, even equal to the default
    ],
    ids=["default", "seed_everything", "model-seed-given", "data-seed-given"],
)
def test_seed_everything_sets_model_and_data_seeds_unless_given_on_their_own(here, given, want):
    main(["validate", *SMALL, *given])
    assert seeds_of(here / "runs" / "manualnet" / "version_0") == want


def test_seed_everything_builds_the_init_of_twolayernet_with_that_seed(here, monkeypatch):
    """The model the CLI builds under --seed_everything 3 holds TwoLayerNet(D, H, C, seed=3)'s weights, not seed 0's."""
    built = {}
    after = ManualNetCLI.after_instantiate_classes

    def keep(self):
        built.update({k: v.clone() for k, v in self.model.net.state_dict().items()})
        after(self)

    monkeypatch.setattr(ManualNetCLI, "after_instantiate_classes", keep)
    main(["validate", *SMALL, "--seed_everything", "3"])
    want = TwoLayerNet(3 * 32 * 32, 8, 10, seed=3).state_dict()
    assert built.keys() == want.keys()
    assert all(torch.equal(built[k], want[k]) for k in want)
    assert not torch.equal(built["w1"], TwoLayerNet(3 * 32 * 32, 8, 10, seed=0).w1)


def test_validate_from_a_checkpoint_keeps_the_checkpoints_seed_for_the_split(here):
    main(["fit", *SMALL, "--trainer.max_epochs", "1", "--seed_everything", "3", "--test", "false"])
    ckpt = here / "runs" / "manualnet" / "version_0" / "checkpoints" / "last.ckpt"
    main(["validate", *SMALL, "--ckpt_path", str(ckpt)])
    assert seeds_of(here / "runs" / "manualnet" / "version_1") == (0, 3, 3)


def test_help_says_what_seed_everything_sets(here, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "sets model.seed (the init) and data.seed (the validation split, the batch order and augmentation)" in text
