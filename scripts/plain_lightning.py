"""The net in a plain Lightning script, without manualnet-train: fit, test, predict, load_from_checkpoint.

python scripts/plain_lightning.py     # generated CIFAR-sized images, no download; runs/plain/
"""

import lightning as L
import torch

from lightning_ref import GradientCrossCheck, ImageDataModule, ModelCheckpoint, TwoLayerClassifier


def main(max_epochs: int = 3, synthetic_train: int = 10_000, hidden: int = 512, root: str = "runs/plain") -> dict:
    dm = ImageDataModule(
        dataset="synthetic", flip=True, synthetic_train=synthetic_train, val_size=synthetic_train // 10
    )
    model = TwoLayerClassifier(hidden=hidden)  # input shape and classes come from the data module
    trainer = L.Trainer(
        max_epochs=max_epochs,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(monitor="val_acc", mode="max", save_last=True), GradientCrossCheck()],
    )
    trainer.fit(model, datamodule=dm)
    (tested,) = trainer.test(model, datamodule=dm, ckpt_path="best")
    batches = trainer.predict(model, datamodule=dm)  # (p, y) per batch: probabilities (N,C) and labels (N,)
    p = torch.cat([p for p, _ in batches])
    best = TwoLayerClassifier.load_from_checkpoint(trainer.checkpoint_callback.best_model_path)
    print(f"test_acc {tested['test_acc']:.4f}, {len(p)} predictions, best: {best.hparams}")
    return {"test_acc": tested["test_acc"], "p": p, "best": best, "datamodule": dm}


if __name__ == "__main__":
    main()
