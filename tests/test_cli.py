"""manualnet-train (scripts/train.py, lightning_ref.cli.main): what a fit leaves behind, and how bad input is refused.

A fit run's folder holds metrics.json (the promised keys), the CSV log, best and last checkpoints (loadable with
torch.load(weights_only=True)), the resolved config and the two PNGs, and the last line printed is `metrics: <path>`.
Each bad input exits with code 2 and one line on stderr naming the option, before any work, leaving every file
already saved byte for byte as it was and no new run folder behind.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_ref.cli import main
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.plots import plot_w1

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data.batch_size", "50", "--data.val_size", "100", "--model.hidden", "16", "--trainer.max_epochs", "2"]
METRICS_KEYS = {"impl", "dataset", "epochs", "hidden", "test_acc", "val_acc", "train_loss", "wall_s", "samples_per_s"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cifar_args(root: Path) -> list[str]:
    return ["--data.dataset", "cifar10", "--data.root", str(root), "--data.download", "false"]


def train_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """scripts/train.py in a fresh interpreter, as `make train` runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *args, "--trainer.enable_progress_bar", "false"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fit_writes_metrics_checkpoints_config_and_pictures_and_prints_the_metrics_path_last(
    fake_cifar10_cached, tmp_path
):
    import json

    proc = train_py("fit", *cifar_args(fake_cifar10_cached), *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("metrics: ")
    metrics_path = tmp_path / last.removeprefix("metrics: ")
    run = metrics_path.parent
    assert run == tmp_path / "runs" / "manualnet" / "version_0"

    metrics = json.loads(metrics_path.read_text())
    assert METRICS_KEYS <= metrics.keys()
    assert (metrics["impl"], metrics["dataset"], metrics["epochs"], metrics["hidden"]) == ("manual", "cifar10", 2, 16)
    assert 0 <= metrics["test_acc"] <= 1 and 0 <= metrics["val_acc"] <= 1 and metrics["train_loss"] > 0
    assert metrics["wall_s"] > 0 and metrics["samples_per_s"] > 0
    assert metrics["crosscheck_steps"] >= 1 and metrics["crosscheck_worst_rel"] < 1e-5  # on by default, and passing

    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    best = [n for n in ckpts if n.startswith("best-")]
    assert "last.ckpt" in ckpts and len(best) == 1
    assert metrics["best_ckpt"].endswith(best[0])
    for name in ckpts:  # loadable the way Lightning and our CLI load them
        ckpt = torch.load(run / "checkpoints" / name, weights_only=True)
        assert ckpt["hyper_parameters"]["hidden"] == 16
    model = TwoLayerClassifier.load_from_checkpoint(run / "checkpoints" / best[0], weights_only=True)
    assert model.net.w1.shape == (3072, 16)

    assert "hidden: 16" in (run / "config.yaml").read_text()
    assert "val_acc" in (run / "metrics.csv").read_text().splitlines()[0]
    for png in ("curves.png", "w1.png"):
        assert (run / png).read_bytes()[:8] == PNG_MAGIC


def test_make_train_without_cifar10_stops_with_one_line_naming_the_missing_path(tmp_path):
    empty = tmp_path / "nodata"
    recipe = str(REPO / "lightning_ref" / "recipes" / "cifar10.yaml")  # what `make train` runs
    proc = train_py("fit", "--config", recipe, "--data.root", str(empty), "--data.download", "false", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("manualnet-train: error: CIFAR-10 not found") and str(empty) in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.ckpt"))


# ---- in this process: print_config, test subcommand, bad input -------------------------------------------------


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """tmp_path as the working directory (runs/ lands there), with sys.argv holding no pytest options."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    return tmp_path


def test_print_config_shows_every_group_with_the_defaults(here, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--print_config"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for line in ("seed_everything: 0", "impl: manual", "every_n_steps: 100", "save_last: true", "monitor: val_acc"):
        assert line in out


@pytest.fixture
def saved_run(here, fake_cifar10) -> Path:
    """A finished run at runs/manualnet/version_0 (fit in this process), whose files must survive what follows."""
    main(["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.enable_progress_bar", "false"])
    return here / "runs" / "manualnet" / "version_0"


def test_test_subcommand_evaluates_a_saved_checkpoint_into_a_new_run_folder(saved_run, fake_cifar10, capsys):
    before = file_hashes(saved_run.parent)
    ckpt = saved_run / "checkpoints" / "last.ckpt"
    main(["test", *cifar_args(fake_cifar10), *TINY, "--ckpt_path", str(ckpt), "--trainer.enable_progress_bar", "false"])
    assert "test_acc" in capsys.readouterr().out
    assert all(file_hashes(saved_run.parent)[k] == v for k, v in before.items())
    assert (saved_run.parent / "version_1").is_dir()


def corrupt(path: Path) -> Path:
    path.write_bytes(b"these are not the weights you are looking for\n" * 10)
    return path


def truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def foreign(path: Path) -> Path:
    torch.save({"model": {"weight": torch.zeros(3)}, "epoch": 3}, path)
    return path


def other_shapes(path: Path, source: Path) -> Path:
    """A Lightning checkpoint of this model whose weights have another hidden size than its hyperparameters say."""
    ckpt = torch.load(source, weights_only=True)
    ckpt["state_dict"] = {
        k: torch.zeros(*v.shape[:-1], 7) if k == "net.w1" else v for k, v in ckpt["state_dict"].items()
    }
    torch.save(ckpt, path)
    return path


BAD = [
    (["--data.dataset", "imagenet"], "dataset: expected one of"),
    (["--data.root", "{empty}"], "CIFAR-10 not found at"),
    (["--model.hidden", "0"], "hidden: expected an integer >= 1, got 0"),
    (["--model.lr", "0"], "lr: expected a number in (0.0, inf), got 0.0"),
    (["--model.lr", "-0.1"], "lr: expected a number in (0.0, inf), got -0.1"),
    (["--data.batch_size", "0"], "batch_size: expected an integer >= 1, got 0"),
    (["--data.val_size", "600"], "val_size: expected fewer than the 600 training images"),
    (["--model.impl", "numpy"], 'Parser key "model.impl"'),
    (["--trainer.logger", "false"], "trainer.logger: fit needs a CSVLogger"),
    (["--ckpt_path", "{missing}"], "ckpt_path: no such file"),
    (["--ckpt_path", "{corrupt}"], "is not a readable checkpoint"),
    (["--ckpt_path", "{truncated}"], "is not a readable checkpoint"),
    (["--ckpt_path", "{foreign}"], "is not a Lightning checkpoint (missing state_dict, hyper_parameters"),
    (["--ckpt_path", "{other_shapes}"], "does not fit this model"),
]


@pytest.mark.parametrize("bad, message", BAD, ids=[" ".join(b) for b, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_leaves_saved_files_alone(saved_run, fake_cifar10, capsys, bad, message):
    last = saved_run / "checkpoints" / "last.ckpt"
    files = {
        "{empty}": str(saved_run.parent.parent.parent / "empty"),
        "{missing}": str(saved_run.parent.parent.parent / "missing.ckpt"),
        "{corrupt}": str(corrupt(saved_run.parent.parent.parent / "corrupt.ckpt")),
        "{truncated}": str(truncated(saved_run.parent.parent.parent / "truncated.ckpt", last)),
        "{foreign}": str(foreign(saved_run.parent.parent.parent / "foreign.ckpt")),
        "{other_shapes}": str(other_shapes(saved_run.parent.parent.parent / "other.ckpt", last)),
    }
    args = [files.get(a, a) for a in bad]
    runs = saved_run.parent
    before = file_hashes(runs)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.enable_progress_bar", "false", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: ") and message in err[-1], err[-1]
    assert "Traceback" not in "\n".join(err)
    assert file_hashes(runs) == before  # every saved file keeps its bytes, and no new run folder is left
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]


def test_an_existing_run_folder_is_never_reused(saved_run, fake_cifar10, capsys):
    before = file_hashes(saved_run)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.logger.init_args.version", "0"])
    assert exit_.value.code == 2
    assert "run folder" in capsys.readouterr().err.strip().splitlines()[-1]
    assert file_hashes(saved_run) == before


def test_w1_picture_shows_at_most_max_units_and_grey_for_one_channel(tmp_path):
    png = tmp_path / "w1.png"
    plot_w1(torch.randn(28 * 28, 150), (1, 28, 28), png, std=torch.tensor([0.3]), max_units=100)
    assert png.read_bytes()[:8] == PNG_MAGIC
