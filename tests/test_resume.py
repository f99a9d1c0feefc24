"""Exact resume through the CLI: a run stopped after epoch 1 of 3 and resumed from its last.ckpt ends with bitwise the
weights and optimizer state of the run that was never stopped (CPU) and with its record (the epoch history, the best
checkpoint and its val_acc and test_acc), also from a checkpoint moved to another folder; resuming never touches the
old run's files.

The runs go through lightning_ref.cli.main in this process (fake CIFAR-10 from conftest, augmentation on, the
gradient cross-check on as by default), in tmp_path as the working directory, so they write tmp_path/runs/...
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from lightning_ref import GradientCrossCheck
from lightning_ref.cli import main


def fit(root: Path, *extra: str) -> None:
    main(
        ["fit", "--data.dataset", "cifar10", "--data.root", str(root), "--data.download", "false"]
        + ["--data.batch_size", "50", "--data.val_size", "100", "--model.hidden", "16", "--model.lr", "0.05"]
        + ["--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false"]
        # "Best" by the highest val_loss: epoch 0's (val_loss falls here), from before the stop, so a resumed run
        # must carry it over from the stopped run to end with the same best.
        + ["--checkpoint.monitor", "val_loss", "--checkpoint.mode", "max"]
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
    with monkeypatch.context() as m:
        m.setattr(GradientCrossCheck, "on_train_epoch_end", stop, raising=False)
        fit(fake_cifar10)
    return fake_cifar10


def stop(self, trainer, pl_module):
    trainer.should_stop = True


def test_last_ckpt_holds_the_last_epoch_when_the_best_is_an_earlier_one(runs):
    """Lightning 2.6 writes last.ckpt only in epochs that save a top-k checkpoint; ours writes it every epoch. The
    best here is epoch 0 (highest val_loss), so only an every-epoch last.ckpt holds epoch 2 of the straight run."""
    ckpts = run_dir(0) / "checkpoints"
    assert [p.name for p in ckpts.glob("best-*.ckpt")] == [next(ckpts.glob("best-epoch000-*")).name]
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * 10)  # 3 epochs of (600 - 100 validation) / 50 steps


RECORD = ("epochs", "history", "best_score", "test_acc", "train_loss")


def same_record(resumed: Path, straight: Path) -> None:
    """The resumed run's metrics.json tells the uninterrupted run's story: every epoch's figures, the best checkpoint
    (its name, in the resumed run's own folder), its score and test_acc."""
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (resumed, straight))
    assert [h["epoch"] for h in a["history"]] == [0, 1, 2]
    assert torch.load(a["best_ckpt"], weights_only=True)["epoch"] == 0  # the best from before the stop
    assert {k: a[k] for k in RECORD} == {k: b[k] for k in RECORD}
    assert Path(a["best_ckpt"]).name == Path(b["best_ckpt"]).name
    assert Path(a["best_ckpt"]) == (resumed / "checkpoints" / Path(b["best_ckpt"]).name).resolve()
    assert Path(a["best_ckpt"]).is_file()


def test_a_resumed_run_ends_bitwise_equal_to_the_uninterrupted_one_with_its_history_and_best(runs, capsys, monkeypatch):
    stopped = torch.load(run_dir(1) / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 0 and stopped["global_step"] == 10  # stopped after the first of 3 epochs
    before = file_hashes(run_dir(1))
    capsys.readouterr()
    reads, load = [], torch.load

    def counted_load(f, *args, **kwargs):
        reads.append(os.path.realpath(f if isinstance(f, (str, os.PathLike)) else getattr(f, "path", f.name)))
        return load(f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "load", counted_load)
        fit(runs, "--ckpt_path", str(run_dir(1) / "checkpoints" / "last.ckpt"))
    assert reads.count(os.path.realpath(run_dir(1) / "checkpoints" / "last.ckpt")) == 1  # read once

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
    same_record(run_dir(2), run_dir(0))


def test_a_moved_checkpoint_resumes_to_the_end_with_its_best_or_says_that_the_best_is_gone(runs, tmp_path, capsys):
    stopped = run_dir(1) / "checkpoints"
    shutil.copytree(stopped, tmp_path / "moved" / "whole")  # the checkpoints folder, best and last, elsewhere
    (tmp_path / "moved" / "alone").mkdir()
    shutil.copy(stopped / "last.ckpt", tmp_path / "moved" / "alone")  # last.ckpt only
    shutil.move("runs", "old")  # where the checkpoint says the best was: gone
    straight = Path("old", "manualnet", "version_0")
    capsys.readouterr()

    fit(runs, "--ckpt_path", str(tmp_path / "moved" / "whole" / "last.ckpt"))
    assert "note" not in capsys.readouterr().err
    same_record(run_dir(0), straight)

    fit(runs, "--ckpt_path", str(tmp_path / "moved" / "alone" / "last.ckpt"))
    note = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(note) == 1 and "the best is tracked again from the resumed epochs" in note[0]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (run_dir(1), straight))
    assert a["history"] == b["history"]  # the history travels in the checkpoint itself
    assert a["best_score"] == max(h["val_loss"] for h in a["history"][1:])  # the best of the epochs after the stop
    assert Path(a["best_ckpt"]).parent == (run_dir(1) / "checkpoints").resolve() and Path(a["best_ckpt"]).is_file()


def test_resuming_with_another_max_epochs_is_refused_before_training_and_changes_nothing(runs, capsys):
    before = file_hashes(Path("runs"))
    with pytest.raises(SystemExit) as exit_:
        fit(runs, "--ckpt_path", str(run_dir(1) / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "5")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: trainer.max_epochs:") and "schedule spans 30 steps" in err[-1]
    assert file_hashes(Path("runs")) == before
    assert not run_dir(2).exists()  # the folder the refused run had started is gone again


REGULARISED = ("--model.dropout", "0.3", "--model.label_smoothing", "0.1", "--model.ema_decay", "0.9")


def test_a_resumed_run_with_dropout_smoothing_and_weight_averaging_ends_bitwise_equal_to_the_uninterrupted_one(
    fake_cifar10, tmp_path, monkeypatch
):
    # The dropout masks come from (seed, step, batch) and the average from Lightning's EMAWeightAveraging state in
    # the checkpoint: both must carry over for the raw weights, the averaged ones and the average's count to agree.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    fit(fake_cifar10, *REGULARISED)
    with monkeypatch.context() as m:
        m.setattr(GradientCrossCheck, "on_train_epoch_end", stop, raising=False)
        fit(fake_cifar10, *REGULARISED)
    fit(fake_cifar10, *REGULARISED, "--ckpt_path", str(run_dir(1) / "checkpoints" / "last.ckpt"))
    straight, resumed = (torch.load(run_dir(k) / "checkpoints" / "last.ckpt", weights_only=True) for k in (0, 2))
    assert straight["global_step"] == resumed["global_step"] == 30
    for part in ("state_dict", "current_model_state", "averaging_state"):  # averaged, raw, the average's count
        assert straight[part].keys() == resumed[part].keys(), part
        for name, w in straight[part].items():
            assert torch.equal(w, resumed[part][name]), (part, name)
    assert straight["averaging_state"]["n_averaged"].item() == 30  # one update per optimizer step
    # the checkpoint's weights are the average, not the last step's
    assert not torch.equal(straight["state_dict"]["net.w1"], straight["current_model_state"]["net.w1"])
