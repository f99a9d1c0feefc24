"""Exact resume through the CLI: a run stopped after epoch 1 of 3 and resumed from its last.ckpt ends with bitwise the
weights and optimizer state of the run that was never stopped (CPU), and resuming never touches the old run's files.

The runs go through lightning_ref.cli.main in this process (fake CIFAR-10 from conftest, augmentation on, the
gradient cross-check on as by default), in tmp_path as the working directory, so they write tmp_path/runs/...
"""

import hashlib
import sys
from pathlib import Path

import pytest
import torch

from lightning_ref.callbacks import RunRecorder
from lightning_ref.cli import main


def fit(root: Path, *extra: str) -> None:
    main(
        ["fit", "--data.dataset", "cifar10", "--data.root", str(root), "--data.download", "false"]
        + ["--data.batch_size", "50", "--data.val_size", "100", "--model.hidden", "16", "--model.lr", "0.05"]
        + ["--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false"]
        + list(extra)
    )


def run_dir(k: int) -> Path:
    return Path("runs", "manualnet", f"version_{k}")


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def runs(fake_cifar10, tmp_path, monkeypatch):
    """version_0: 3 epochs straight; version_1: the same run stopped after epoch 1 (its last.ckpt is at epoch 1)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])  # main() parses its args list, not pytest's
    fit(fake_cifar10)

    def stop(self, trainer, pl_module):
        trainer.should_stop = True

    with monkeypatch.context() as m:
        m.setattr(RunRecorder, "on_train_epoch_end", stop, raising=False)
        fit(fake_cifar10)
    return fake_cifar10


def test_a_resumed_run_ends_bitwise_equal_to_the_uninterrupted_one(runs, capsys):
    stopped = torch.load(run_dir(1) / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 0 and stopped["global_step"] == 10  # stopped after the first of 3 epochs
    before = file_hashes(run_dir(1))
    capsys.readouterr()

    fit(runs, "--ckpt_path", str(run_dir(1) / "checkpoints" / "last.ckpt"))

    assert capsys.readouterr().out.splitlines()[-1] == f"metrics: {run_dir(2) / 'metrics.json'}"  # a new run folder
    straight = torch.load(run_dir(0) / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(run_dir(2) / "checkpoints" / "last.ckpt", weights_only=True)
    assert straight["global_step"] == resumed["global_step"] == 30
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for name, w in straight["state_dict"].items():
        assert torch.equal(w, resumed["state_dict"][name]), name
    momentum = [s["momentum_buffer"] for s in straight["optimizer_states"][0]["state"].values()]
    momentum_resumed = [s["momentum_buffer"] for s in resumed["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, momentum_resumed, strict=True))
    assert straight["lr_schedulers"][0]["last_epoch"] == resumed["lr_schedulers"][0]["last_epoch"] == 30
    assert file_hashes(run_dir(1)) == before  # the stopped run's files are untouched


def test_resuming_with_another_max_epochs_is_refused_before_training_and_changes_nothing(runs, capsys):
    before = file_hashes(Path("runs"))
    with pytest.raises(SystemExit) as exit_:
        fit(runs, "--ckpt_path", str(run_dir(1) / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "5")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: trainer.max_epochs:") and "schedule spans 30 steps" in err[-1]
    assert file_hashes(Path("runs")) == before
    assert not run_dir(2).exists()  # the folder the refused run had started is gone again
