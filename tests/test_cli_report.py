"""manualnet-train reports what it measured, rebuilds a checkpoint's data, helps, and runs quietly.

- fit ends with the test's accuracy and loss (as computed here from the tested checkpoint), the checkpoint tested
  and the run folder;
- test, validate and predict with only --ckpt_path rebuild the data module the checkpoint was trained on (a
  Fashion-MNIST or synthetic fit, where the command line's default is CIFAR-10); a --data option that contradicts
  the checkpoint is refused naming both values; a checkpoint of another model, or whose data set is missing here, is
  one line naming the checkpoint, what it holds and what is missing (exit 2, nothing written);
- --help describes every option of the project and lists them before Lightning's trainer options;
- a normal fit and predict raise no warning and print none of Lightning's cloud tips.
"""

import contextlib
import functools
import io
import logging
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import fake_images, write_mnist

from lightning_ref.cli import main
from lightning_ref.data import ImageDataModule
from lightning_ref.module import TwoLayerClassifier

TINY = ["--data.batch_size", "50", "--data.val_size", "100", "--model.hidden", "16", "--trainer.max_epochs", "2"]
QUIET = ["--trainer.enable_progress_bar", "false"]
PROJECT_GROUPS = ("model", "data", "crosscheck")  # every option of these has a description of its own


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> dict:
    """One Fashion-MNIST fit (300 + 100 fake images, TINY, downloads off) in this process: its data root, last.ckpt,
    what it printed, and the test images' labels."""
    base = tmp_path_factory.mktemp("fashion")
    x, y = fake_images(400, (1, 28, 28), 10, seed=2)
    root = write_mnist(base / "data", "FashionMNIST", x[:300], y[:300], x[300:], y[300:])
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        mp.chdir(base)
        mp.setattr(sys, "argv", ["manualnet-train"])
        data = ["--data.dataset", "fashion-mnist", "--data.root", str(root), "--data.download", "false"]
        main(["fit", *data, *TINY, *QUIET])
    run = base / "runs" / "manualnet" / "version_0"
    return {"root": root, "run": run, "last": run / "checkpoints" / "last.ckpt", "out": out.getvalue(), "y": y[300:]}


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """tmp_path as the working directory (runs/ lands there), with sys.argv holding no pytest options."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["manualnet-train"])
    return tmp_path


def by_hand(ckpt: Path, dm: ImageDataModule) -> tuple[float, float]:
    """The checkpoint's test accuracy and mean cross-entropy, computed here (F.cross_entropy, not the manual loss)."""
    model = TwoLayerClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    dm.setup("test")
    x, y = next(iter(dm.test_dataloader()))
    assert len(y) == len(dm.y_test)  # one batch: the whole test split
    with torch.no_grad():
        s2 = model(x)
    return (s2.argmax(1) == y).float().mean().item(), F.cross_entropy(s2, y).item()


def table_value(out: str, name: str) -> float:
    """The value of `name` in Lightning's test/validate table."""
    return float(re.search(rf"^\s*{name}\s+([0-9.e-]+)\s*$", out, re.M).group(1))


# ---- fit reports -------------------------------------------------------------------------------------------------


def test_fit_ends_with_the_test_accuracy_and_loss_of_the_checkpoint_as_computed_by_hand_and_the_run_folder(fashion):
    lines = fashion["out"].strip().splitlines()[-3:]
    dm = ImageDataModule("fashion-mnist", root=str(fashion["root"]), download=False, val_size=100)
    acc, loss = by_hand(fashion["last"], dm)
    assert lines[0] == (
        f"test: test_acc {acc:.4f}, test_loss {loss:.4f} (100 fashion-mnist test images, {fashion['last'].resolve()})"
    )
    assert lines[1].startswith("run folder: runs/manualnet/version_0 (epochs 2, best val_acc ")
    assert lines[2] == "metrics: runs/manualnet/version_0/metrics.json"


def test_the_progress_bar_shows_the_epochs_training_loss(here, capsys):
    data = ["--data.dataset", "synthetic", "--data.synthetic_train", "300", "--data.synthetic_test", "100"]
    main(["fit", *data, *TINY, "--test", "false"])
    bar = capsys.readouterr().out  # where Lightning's tqdm bar writes
    shown = [float(v) for v in re.findall(r"train_loss_epoch=([0-9.]+)", bar)]
    rows = (here / "runs" / "manualnet" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [
        float(r.split(",")[header.index("train_loss_epoch")])
        for r in rows[1:]
        if r.split(",")[header.index("train_loss_epoch")]
    ]
    assert len(logged) == 2 and shown
    assert shown[-1] == pytest.approx(logged[-1], abs=6e-3)  # the bar rounds to 3 digits


# ---- test, validate and predict from a checkpoint alone -----------------------------------------------------------


def test_test_validate_and_predict_with_only_ckpt_path_rebuild_the_fashion_mnist_data(fashion, here, capsys):
    import json

    last = str(fashion["last"])
    metrics = json.loads((fashion["run"] / "metrics.json").read_text())
    main(["test", "--ckpt_path", last, *QUIET])  # the command line's default data set is CIFAR-10
    assert table_value(capsys.readouterr().out, "test_acc") == pytest.approx(metrics["test_acc"], abs=1e-6)
    main(["validate", "--ckpt_path", last, *QUIET])
    assert table_value(capsys.readouterr().out, "val_acc") == pytest.approx(metrics["history"][-1]["val_acc"], abs=1e-6)
    main(["predict", "--ckpt_path", last, *QUIET])
    path = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("predictions: "))
    rows = [r.split(",") for r in path.read_text().splitlines()]
    assert len(rows[0]) == 3 + 10 and [int(r[1]) for r in rows[1:]] == fashion["y"].tolist()  # its 100 test labels


def test_test_from_a_synthetic_checkpoint_alone_scores_its_test_split_as_computed_by_hand(here, capsys):
    data = ["--data.dataset", "synthetic", "--data.synthetic_train", "300", "--data.synthetic_test", "100"]
    main(["fit", *data, *TINY, *QUIET, "--test", "false", "--data.seed", "4"])
    last = here / "runs" / "manualnet" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    main(["test", "--ckpt_path", str(last), *QUIET])
    dm = ImageDataModule("synthetic", synthetic_train=300, synthetic_test=100, val_size=100, seed=4)
    dm.prepare_data()
    acc, loss = by_hand(last, dm)
    out = capsys.readouterr().out
    assert table_value(out, "test_acc") == pytest.approx(acc, abs=1e-6)
    assert table_value(out, "test_loss") == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize(
    "option, saved, given",
    [("dataset", "'fashion-mnist'", "mnist"), ("val_size", "100", "50"), ("batch_size", "50", "64")],
)
def test_a_data_option_that_contradicts_the_checkpoint_is_refused_naming_both_values(
    fashion, here, capsys, monkeypatch, option, saved, given
):
    monkeypatch.setattr(ImageDataModule, "prepare_data", lambda self: pytest.fail("prepare_data ran"))
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--ckpt_path", str(fashion["last"]), f"--data.{option}", given, *QUIET])
    assert exit_.value.code == 2
    shown = repr(int(given)) if given.isdigit() else repr(given)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"manualnet-train: error: data.{option}: the checkpoint {fashion['last']} has {saved}, got {shown} (a "
        f"checkpoint's data is used as it was saved: drop --data.{option} or give {saved})"
    )
    assert not (here / "runs").exists()


def test_where_and_how_the_data_is_read_may_differ_from_the_checkpoint(fashion, here, capsys):
    main(["test", "--ckpt_path", str(fashion["last"]), "--data.eval_batch_size", "7", *QUIET])
    assert "test_acc" in capsys.readouterr().out


# ---- bad checkpoints: one line, exit 2, nothing written -----------------------------------------------------------


def moved_data(path: Path, source: Path) -> Path:
    """The checkpoint as another machine saved it: its data set under a root that does not exist here."""
    ckpt = torch.load(source, weights_only=True)
    ckpt["datamodule_hyper_parameters"]["root"] = "/nonexistent/fashion"
    torch.save(ckpt, path)
    return path


def other_model(path: Path, source: Path) -> Path:
    """A Lightning checkpoint of another LightningModule."""
    ckpt = torch.load(source, weights_only=True)
    ckpt["hyper_parameters"] = {"layers": 3, "lr": 0.1}
    torch.save(ckpt, path)
    return path


def before_data_modules(path: Path, source: Path) -> Path:
    """A checkpoint without the data module's arguments (as saved before the data module saved them)."""
    ckpt = torch.load(source, weights_only=True)
    del ckpt["datamodule_hyper_parameters"]
    torch.save(ckpt, path)
    return path


BAD_CKPT = [
    (
        moved_data,
        "ckpt_path: {ckpt} holds TwoLayerClassifier (impl manual, hidden 16) of fashion-mnist (root "
        "/nonexistent/fashion) after 8 optimizer steps, but here: Fashion-MNIST not found at "
        "/nonexistent/fashion/FashionMNIST/raw",
    ),
    (
        other_model,
        "ckpt_path: {ckpt} is not a TwoLayerClassifier checkpoint (no impl/hidden hyperparameters; it holds "
        "hyperparameters layers, lr)",
    ),
    (
        before_data_modules,
        "ckpt_path: {ckpt} holds a net for (1, 28, 28) images in 10 classes; the data set here gives (3, 32, 32) "
        "images in 10 classes (give the data set it was trained on: --data.dataset)",
    ),
]


@pytest.mark.parametrize("subcommand", ["test", "predict"])
@pytest.mark.parametrize("make, message", BAD_CKPT, ids=[b[0].__name__ for b in BAD_CKPT])
def test_a_checkpoint_of_another_model_or_data_missing_here_exits_2_with_one_line_naming_both(
    fashion, here, capsys, subcommand, make, message
):
    ckpt = make(here / "bad.ckpt", fashion["last"])
    with pytest.raises(SystemExit) as exit_:
        main([subcommand, "--ckpt_path", str(ckpt), *QUIET])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("manualnet-train: error: " + message.format(ckpt=ckpt)), err[-1]
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in here.iterdir()) == ["bad.ckpt"]  # nothing written: no run folder left


def test_a_type_error_that_names_no_argument_keeps_its_traceback(here, monkeypatch):
    @functools.wraps(TwoLayerClassifier.__init__)  # the same signature, for the parser
    def broken(self, *args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")  # a bug's message, not a check's

    monkeypatch.setattr(TwoLayerClassifier, "__init__", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["fit", "--data.dataset", "synthetic", *QUIET])


# ---- --help ------------------------------------------------------------------------------------------------------


def help_entries(text: str) -> dict[str, str]:
    """Each option of an argparse help, mapped to its help text (without the option's own metavar)."""
    entries, option = {}, None
    for line in text.splitlines():
        start = re.match(r"^  (-\S+)(.*)$", line)
        if start:
            option = start.group(1).rstrip(",")
            rest = re.split(r"\s{2,}", start.group(2).strip(), maxsplit=1)
            entries[option] = rest[1] if len(rest) > 1 else ""
        elif option and line.startswith(" " * 6):
            entries[option] += " " + line.strip()
        else:
            option = None
    return entries


def test_fit_help_describes_every_project_option_and_lists_them_before_the_trainers(here, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    entries = help_entries(text)
    ours = [o for o in entries if o.split(".")[0].lstrip("-") in PROJECT_GROUPS and o.count(".") == 1]
    ours += ["--seed_everything", "--test", "--test_ckpt"]
    assert len(ours) > 25
    undescribed = [o for o in ours if not entries[o].strip() or entries[o].lstrip().startswith("(type:")]
    assert undescribed == []
    assert "lacks type and help" not in text
    first_trainer = text.index("--trainer.accelerator ACCELERATOR\n")
    assert max(text.index(f"\n  --{g}.") for g in (*PROJECT_GROUPS, "checkpoint")) < first_trainer


# ---- quiet -------------------------------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_fit_and_a_predict_raise_no_warning_and_print_no_tip(fashion, here):
    data = ["--data.dataset", "fashion-mnist", "--data.root", str(fashion["root"]), "--data.download", "false"]
    records = Records()
    lightning_log = logging.getLogger("lightning.pytorch")  # Lightning's messages, which do not propagate further
    lightning_log.addHandler(records)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # the categories Python's default filters hide (a user never sees them): jsonargparse's deprecations
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            # the progress bar on, as a user runs it; log_every_n_steps within the 4 steps of an epoch of this tiny
            # data set (else Lightning rightly warns that the training loss would never be logged)
            main(["fit", *data, *TINY, "--trainer.log_every_n_steps", "2"])
            main(["predict", "--ckpt_path", str(here / "runs/manualnet/version_0/checkpoints/last.ckpt")])
    finally:
        lightning_log.removeHandler(records)
    assert any(m.startswith("GPU available") for m in records.messages)  # the handler saw Lightning's messages
    assert [m for m in records.messages if "Tip:" in m] == []
