"""manualnet-train (scripts/train.py, lightning_ref.cli.main): what a fit leaves behind, and how bad input is refused.

A fit run's folder holds metrics.json (the promised keys), the CSV log, best and last checkpoints (loadable with
torch.load(weights_only=True)), the resolved config and the two PNGs, and the last line printed is `metrics: <path>`.
Each bad input exits with code 2 and one line on stderr naming the option, before any work, leaving every file
already saved byte for byte as it was and no new run folder behind.
"""

import csv
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import fake_images, write_cifar

import lightning_ref.sources
from lightning_ref.cli import main
from lightning_ref.data import ImageDataModule
from lightning_ref.errors import UsageError
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.plots import plot_curves, plot_w1
from lightning_ref.resume import PreloadedCheckpointIO, check_checkpoint
from manualnet.functional import TwoLayerNetFn

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data.batch_size", "50", "--data.val_size", "100", "--model.hidden", "16", "--trainer.max_epochs", "2"]
METRICS_KEYS = {"impl", "dataset", "epochs", "hidden", "test_acc", "val_acc", "train_loss", "wall_s", "samples_per_s"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cifar_args(root: Path) -> list[str]:
    return ["--data.dataset", "cifar10", "--data.root", str(root), "--data.download", "false"]


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fit_writes_metrics_checkpoints_config_and_pictures_and_prints_the_metrics_path_last(
    fake_cifar10_cached, here, capsys
):
    import json

    # In this process (scripts/train.py in a fresh interpreter is what tests/test_ddp.py runs).
    main(["fit", *cifar_args(fake_cifar10_cached), *TINY, "--trainer.enable_progress_bar", "false"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("metrics: ")
    metrics_path = here / last.removeprefix("metrics: ")
    run = metrics_path.parent
    assert run == here / "runs" / "manualnet" / "version_0"

    metrics = json.loads(metrics_path.read_text())
    assert METRICS_KEYS <= metrics.keys()
    assert (metrics["impl"], metrics["dataset"], metrics["epochs"], metrics["hidden"]) == ("manual", "cifar10", 2, 16)
    # The figures are the run's own: the CSV log's epoch rows, and the best checkpoint's test accuracy as saved.
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    val_acc = [float(r["val_acc"]) for r in rows if r["val_acc"]]
    train_loss = [float(r["train_loss_epoch"]) for r in rows if r["train_loss_epoch"]]
    assert [h["val_acc"] for h in metrics["history"]] == pytest.approx(val_acc, abs=1e-7)
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert metrics["val_acc"] == pytest.approx(max(val_acc), abs=1e-7)
    assert metrics["train_loss"] == pytest.approx(train_loss[-1], abs=1e-7)
    assert metrics["test_acc"] == pytest.approx(float([r["test_acc"] for r in rows if r["test_acc"]][-1]), abs=1e-7)
    assert metrics["train_samples"] == 2 * (500 // 50) * 50 and metrics["samples_per_s"] > 0
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


def run_of(stdout: str) -> Path:
    """The run folder of the `metrics: <path>` line a fit prints last."""
    return Path(stdout.strip().splitlines()[-1].removeprefix("metrics: ")).parent


def test_fit_follows_default_root_dir_and_logs_the_learning_rate(here, fake_cifar10, capsys):
    main(
        ["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.default_root_dir", "elsewhere"]
        + ["--trainer.log_every_n_steps", "5", "--trainer.enable_progress_bar", "false"]
    )
    run = run_of(capsys.readouterr().out)
    assert run == Path("elsewhere", "manualnet", "version_0") and not (here / "runs").exists()
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lr-SGD/pg1", "lr-SGD/pg2", "val_acc"} <= set(header)  # both parameter groups (weights, biases)
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "last.ckpt"


def test_fit_without_a_logger_and_without_the_test_still_writes_its_run_folder(here, fake_cifar10, capsys):
    import json

    main(
        ["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.logger", "false", "--test", "false"]
        + ["--trainer.default_root_dir", "out", "--trainer.enable_progress_bar", "false"]
    )
    out = capsys.readouterr().out
    run = run_of(out)
    assert run == Path("out", "manualnet", "version_0")
    assert {"config.yaml", "metrics.json", "curves.png", "w1.png", "checkpoints"} == {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_acc"] is None and metrics["tested_ckpt"] is None and "test_acc" not in out
    assert [sorted(h) for h in metrics["history"]] == [
        ["epoch", "lr", "train_acc", "train_loss", "val_acc", "val_loss"]
    ] * 2
    best = torch.load(metrics["best_ckpt"], weights_only=True)
    assert metrics["val_acc"] == max(h["val_acc"] for h in metrics["history"])
    assert best["epoch"] == max(metrics["history"], key=lambda h: h["val_acc"])["epoch"]


def test_fit_with_two_loggers_writes_to_both_and_uses_the_first_ones_folder(here, fake_cifar10, capsys):
    loggers = (
        '[{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "a"}},'
        ' {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "b", "name": "copy"}}]'
    )
    main(
        ["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.logger", loggers, "--trainer.enable_progress_bar", "false"]
    )
    assert run_of(capsys.readouterr().out) == Path("a", "manualnet", "version_0")  # name: the default logger's
    first, second = (Path(d, "metrics.csv").read_text() for d in ("a/manualnet/version_0", "b/copy/version_0"))
    assert first == second and "val_acc" in first


def test_fit_with_a_tensorboard_logger_writes_its_event_file_and_the_run_record(here, fake_cifar10, capsys):
    main(
        ["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger"]
        + ["--trainer.logger.save_dir", "tb", "--trainer.enable_progress_bar", "false"]
    )
    run = run_of(capsys.readouterr().out)
    assert run == Path("tb", "manualnet", "version_0")  # the default logger's name carries over to the new class
    assert list(run.glob("events.out.tfevents.*")) and (run / "metrics.json").is_file()


def test_a_bug_in_a_function_keeps_its_traceback_instead_of_one_line(here, fake_cifar10, monkeypatch):
    def broken(*args):
        raise ValueError("a deliberate bug in TwoLayerNetFn.forward")

    monkeypatch.setattr(TwoLayerNetFn, "forward", staticmethod(broken))
    with pytest.raises(ValueError, match="a deliberate bug"):  # not SystemExit(2) with one line
        main(["fit", *cifar_args(fake_cifar10), *TINY, "--trainer.enable_progress_bar", "false"])


def test_predict_writes_the_test_splits_classes_and_probabilities_as_the_checkpoints_net_gives_them(
    saved_run, fake_cifar10, capsys
):
    best = next((saved_run / "checkpoints").glob("best-*.ckpt"))
    capsys.readouterr()
    main(
        [
            "predict",
            *cifar_args(fake_cifar10),
            *TINY,
            "--ckpt_path",
            str(best),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    path = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("predictions: "))
    assert path.resolve() == saved_run.parent / "version_1" / "predictions.csv"
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["index", "label", "predicted", *(f"p_{c}" for c in range(10))]
    got = torch.tensor([[float(v) for v in r[3:]] for r in rows[1:]], dtype=torch.float64)
    # The independent truth: the checkpoint's weights in float64, on the test split normalised as in training.
    dm = ImageDataModule("cifar10", root=str(fake_cifar10), download=False, val_size=100)
    dm.setup("test")
    w = {k: v.double() for k, v in torch.load(best, weights_only=True)["state_dict"].items()}
    x = ((dm.x_test.double() / 255 - dm.mean.double().view(1, 3, 1, 1)) / dm.std.double().view(1, 3, 1, 1)).flatten(1)
    p = torch.softmax(torch.relu(x @ w["net.w1"] + w["net.b1"]) @ w["net.w2"] + w["net.b2"], dim=1)
    assert len(rows) - 1 == len(dm.y_test) == 200
    torch.testing.assert_close(got, p, rtol=0, atol=1e-5)  # the float32 net (D=3072) against float64
    assert [int(r[2]) for r in rows[1:]] == p.argmax(1).tolist()
    assert [int(r[1]) for r in rows[1:]] == dm.y_test.tolist()
    assert [int(r[0]) for r in rows[1:]] == list(range(200))

    # Without the predictions kept in memory, in batches of 64: the same file (written batch by batch).
    args = ["predict", *cifar_args(fake_cifar10), *TINY, "--ckpt_path", str(best), "--trainer.enable_progress_bar"]
    main([*args, "false", "--return_predictions", "false", "--data.eval_batch_size", "64"])
    again = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("predictions: "))
    assert again.resolve() == saved_run.parent / "version_2" / "predictions.csv"
    rows_again = list(csv.reader(again.open()))
    assert [r[:3] for r in rows_again] == [r[:3] for r in rows]  # header, index, label, predicted
    # the probabilities to float32 rounding: a matrix product's summation order may depend on the batch's size
    again_p = torch.tensor([[float(v) for v in r[3:]] for r in rows_again[1:]], dtype=torch.float64)
    torch.testing.assert_close(again_p, got, rtol=0, atol=1e-6)


def test_make_train_without_cifar10_stops_with_one_line_naming_the_missing_path(here, capsys):
    empty = here / "nodata"
    recipe = str(REPO / "lightning_ref" / "recipes" / "cifar10.yaml")  # what `make train` runs
    # `make train` with CIFAR-10 missing and no download (in this process: main() is what scripts/train.py calls)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", recipe, "--data.root", str(empty), "--data.download", "false"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("manualnet-train: error: CIFAR-10 not found") and str(empty) in line
    assert not (here / "runs").exists() or not any((here / "runs").rglob("*.ckpt"))


# ---- print_config, test subcommand, bad input ------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The runs/ folder of one fit (fake CIFAR-10, TINY, in this process), made once for the module."""
    root = tmp_path_factory.mktemp("finished")
    x, y = fake_images(800, (3, 32, 32), 10, seed=10)
    data = write_cifar(root / "data", x[:600], y[:600], x[600:], y[600:])
    with pytest.MonkeyPatch.context() as mp:  # as the function-scoped fixtures here, cifar_checksums_off and the cache
        mp.setattr(lightning_ref.sources, "check_md5", lambda path, data, expected: None)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        mp.chdir(root)
        mp.setattr(sys, "argv", ["manualnet-train"])
        main(["fit", *cifar_args(data), *TINY, "--trainer.enable_progress_bar", "false"])
    return root / "runs"


@pytest.fixture
def saved_run(here, fake_cifar10, finished_run) -> Path:
    """A finished run at runs/manualnet/version_0 (a copy of finished_run), whose files must survive what follows."""
    shutil.copytree(finished_run, here / "runs")
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


# The third element: whether the check needs the data (all others must stop before prepare_data: no download).
BAD = [
    (["--data.dataset", "imagenet"], "dataset: expected one of"),
    (["--data.root", "{empty}"], "CIFAR-10 not found at", True),
    (["--model.hidden", "0"], "hidden: expected an integer >= 1, got 0"),
    (["--model.lr", "0"], "lr: expected a number in (0.0, inf), got 0.0"),
    (["--model.lr", "-0.1"], "lr: expected a number in (0.0, inf), got -0.1"),
    (["--data.batch_size", "0"], "batch_size: expected an integer >= 1, got 0"),
    (["--data.val_size", "600"], "val_size: expected fewer than the 600 training images", True),
    (["--data.batch_size", "501"], "batch_size: expected at most 500 (the 500 training images", True),
    (["--model.impl", "numpy"], 'Parser key "model.impl"'),
    (["--trainer.logger", "{unbuildable}"], "cannot be built (ModuleNotFoundError"),
    (["--trainer.default_root_dir", "{under_a_file}"], "trainer.default_root_dir: cannot write"),
    (["--ckpt_path", "{last}", "--model.hidden", "32"], "model.hidden: the checkpoint {last} has 16, got 32"),
    # given at the code's default (2048) is still given: refused, not taken for "not given"
    (["--ckpt_path", "{last}", "--model.hidden", "2048"], "model.hidden: the checkpoint {last} has 16, got 2048"),
    (["--ckpt_path", "{last}", "--config", "{hidden_32}"], "model.hidden: the checkpoint {last} has 16, got 32"),
    (
        ["--ckpt_path", "{last}", "--trainer.max_epochs", "3"],
        "trainer.max_epochs: the checkpoint's learning-rate",
        True,
    ),
    (["--ckpt_path", "{missing}"], "ckpt_path: no such file"),
    (["--ckpt_path", "{corrupt}"], "is not a readable checkpoint"),
    (["--ckpt_path", "{truncated}"], "is not a readable checkpoint"),
    (["--ckpt_path", "{foreign}"], "is not a Lightning checkpoint (missing state_dict, hyper_parameters"),
    (["--ckpt_path", "{other_shapes}"], "does not fit this model"),
]


def written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def unbuildable_logger() -> str:
    """A logger that ships with Lightning whose package is not installed here (its constructor raises)."""
    for cls, package in (("MLFlowLogger", "mlflow"), ("WandbLogger", "wandb"), ("NeptuneLogger", "neptune")):
        if importlib.util.find_spec(package) is None:
            return f"lightning.pytorch.loggers.{cls}"
    pytest.skip("mlflow, wandb and neptune are all installed: no logger that cannot be built")


@pytest.mark.parametrize("bad, message, needs_data", [(*b, False)[:3] for b in BAD], ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_exits_2_with_one_line_and_leaves_saved_files_alone(
    saved_run, fake_cifar10, capsys, monkeypatch, bad, message, needs_data
):
    last = saved_run / "checkpoints" / "last.ckpt"
    (saved_run.parent.parent.parent / "a_file").write_text("")
    files = {
        "{last}": str(last),
        "{unbuildable}": unbuildable_logger() if "{unbuildable}" in bad else "",
        "{under_a_file}": str(saved_run.parent.parent.parent / "a_file" / "runs"),
        "{empty}": str(saved_run.parent.parent.parent / "empty"),
        "{missing}": str(saved_run.parent.parent.parent / "missing.ckpt"),
        "{corrupt}": str(corrupt(saved_run.parent.parent.parent / "corrupt.ckpt")),
        "{truncated}": str(truncated(saved_run.parent.parent.parent / "truncated.ckpt", last)),
        "{foreign}": str(foreign(saved_run.parent.parent.parent / "foreign.ckpt")),
        "{other_shapes}": str(other_shapes(saved_run.parent.parent.parent / "other.ckpt", last)),
        "{hidden_32}": str(written(saved_run.parent.parent.parent / "hidden_32.yaml", "model:\n  hidden: 32\n")),
    }
    args = [files.get(a, a) for a in bad]
    message = message.replace("{last}", str(last))
    runs = saved_run.parent
    before = file_hashes(runs)
    capsys.readouterr()
    for step in ("training_step", "validation_step"):  # refused before any step, the sanity check's included
        monkeypatch.setattr(TwoLayerClassifier, step, lambda *a, step=step: pytest.fail(f"{step} ran"))
    if not needs_data:  # refused before prepare_data: no download or decode started
        monkeypatch.setattr(ImageDataModule, "prepare_data", lambda self: pytest.fail("prepare_data ran"))
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


def test_predict_without_a_checkpoint_exits_2_with_one_line_before_any_work(here, fake_cifar10, capsys, monkeypatch):
    monkeypatch.setattr(ImageDataModule, "prepare_data", lambda self: pytest.fail("prepare_data ran"))
    with pytest.raises(SystemExit) as exit_:
        main(["predict", *cifar_args(fake_cifar10)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "manualnet-train: error: ckpt_path: predict needs a checkpoint (--ckpt_path FILE), got none"
    )
    assert not (here / "runs").exists()


def pixels(png: Path):
    import matplotlib.image

    return matplotlib.image.imread(png)


def test_curves_picture_draws_the_history_it_is_given(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_loss": 2 - e / 4,
            "val_loss": 2 - e / 5,
            "train_acc": e / 5,
            "val_acc": e / 6,
            "lr": 0.1 / (e + 1),
        }
        for e in range(5)
    ]
    plot_curves(rows, tmp_path / "a.png")
    plot_curves([{**r, "val_acc": 1 - r["val_acc"]} for r in rows], tmp_path / "b.png")
    plot_curves([{**r, "lr": r["lr"] * (r["epoch"] % 2)} for r in rows], tmp_path / "c.png")
    a, b, c = (pixels(tmp_path / f"{n}.png") for n in "abc")
    assert a.shape == (400, 1400, 4)  # 14x4 inches at 100 dpi: the three panels
    assert not (a == b).all() and not (a == c).all()  # another accuracy or learning-rate curve: another picture


def test_w1_picture_shows_at_most_max_units_and_grey_for_one_channel(tmp_path):
    w1 = torch.randn(28 * 28, 150)
    plot_w1(w1, (1, 28, 28), tmp_path / "a.png", std=torch.tensor([0.3]), max_units=100)
    w1[:, w1.norm(dim=0).argmin()] *= -1  # a unit that is not drawn: the same picture
    plot_w1(w1, (1, 28, 28), tmp_path / "b.png", std=torch.tensor([0.3]), max_units=100)
    w1[:, w1.norm(dim=0).argmax()] *= -1  # a drawn unit, inverted: another picture
    plot_w1(w1, (1, 28, 28), tmp_path / "c.png", std=torch.tensor([0.3]), max_units=100)
    a, b, c = (pixels(tmp_path / f"{n}.png") for n in "abc")
    assert (a == b).all() and not (a == c).all()
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()  # grey: R = G = B everywhere


def test_checkpoints_are_read_with_weights_only_whatever_the_caller_or_the_environment_says(tmp_path, monkeypatch):
    from fractions import Fraction
    from pickle import UnpicklingError

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load's default would turn to False
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "object": Fraction(1, 3)}, path)  # an object weights_only refuses to unpickle
    with pytest.raises(UnpicklingError, match="Weights only load failed"):
        PreloadedCheckpointIO({}).load_checkpoint(path, weights_only=False)  # Trainer's restore and test read here
    with pytest.raises(UsageError, match="torch.load with weights_only=True raised UnpicklingError"):
        check_checkpoint(str(path))


SYNTH = ["--data.dataset", "synthetic", "--data.synthetic_train", "400", "--data.synthetic_test", "100"]
SYNTH += ["--data.val_size", "100", "--data.batch_size", "50", "--model.hidden", "16", "--trainer.max_epochs", "3"]


def accuracy_by_hand(ckpt: str) -> float:
    """The checkpoint's test accuracy, computed here: its weights on the synthetic test split of SYNTH."""
    model = TwoLayerClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    dm = ImageDataModule(dataset="synthetic", synthetic_train=400, synthetic_test=100, val_size=100, batch_size=50)
    dm.prepare_data()
    dm.setup("test")
    right = total = 0
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            right += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return right / total


@pytest.mark.parametrize("which", ["last", "best"])
def test_fit_tests_the_checkpoint_test_ckpt_names_as_its_weights_score_by_hand(here, capsys, which):
    import json

    args = ["fit", *SYNTH, "--trainer.enable_progress_bar", "false"]
    main(args if which == "last" else [*args, "--test_ckpt", "best"])  # last: the default
    metrics = json.loads((run_of(capsys.readouterr().out) / "metrics.json").read_text())
    assert metrics["tested_ckpt"] == metrics[f"{which}_ckpt"]
    assert metrics["test_acc"] == pytest.approx(accuracy_by_hand(metrics[f"{which}_ckpt"]), abs=1e-6)
