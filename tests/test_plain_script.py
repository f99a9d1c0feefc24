"""The Lightning layer without the CLI: the README's plain Lightning script fits, tests, predicts and reloads the best
checkpoint with nothing restated that the data module knows."""

import re
from pathlib import Path

import lightning as L
import pytest
import torch

import lightning_ref
from lightning_ref import ImageDataModule, TwoLayerClassifier
from lightning_ref.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


# The README's sizes, and the smaller ones the test runs it with.
SMALLER = {"synthetic_train=10_000": "synthetic_train=600", "val_size=1_000": "val_size=60", "hidden=512": "hidden=16",
           "max_epochs=3": "max_epochs=2"}  # fmt: skip


def readme_plain_script() -> str:
    """The README's Python block that imports lightning, with SMALLER's sizes (each must be there to be replaced)."""
    (block,) = [
        b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S) if "import lightning" in b
    ]
    for old, new in SMALLER.items():
        assert old in block, f"the README's plain script no longer has {old!r}"
        block = block.replace(old, new)
    return block


def test_the_package_exports_what_a_lightning_script_needs():
    for name in ("TwoLayerClassifier", "ImageDataModule", "GradientCrossCheck", "ModelCheckpoint", "RunRecorder"):
        assert name in lightning_ref.__all__ and hasattr(lightning_ref, name), name


def test_the_plain_script_fits_tests_predicts_and_reloads_the_best_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its runs/plain/
    out = {}
    exec(readme_plain_script(), out)
    dm = out["dm"]
    assert out["tested"]["test_acc"] > 1 / dm.num_classes  # learned something in two epochs
    assert out["p"].shape == (dm.synthetic_test, dm.num_classes)
    assert torch.allclose(out["p"].sum(1), torch.ones(len(out["p"])))
    best = out["best"]  # rebuilt from the checkpoint's hyperparameters alone
    assert best.hparams.input_shape == dm.input_shape and best.hparams.num_classes == dm.num_classes
    assert best.net.w1.shape == (3 * 32 * 32, 16)


def test_a_model_without_shape_or_data_module_names_what_it_needs(tmp_path):
    model = TwoLayerClassifier(hidden=8)
    dm = ImageDataModule(dataset="synthetic", synthetic_train=300, synthetic_test=50, val_size=50, batch_size=50)
    dm.setup("fit")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(UsageError, match=r"input_shape: expected .* or a data module with input_shape"):
        trainer.fit(model, train_dataloaders=dm.train_dataloader())
