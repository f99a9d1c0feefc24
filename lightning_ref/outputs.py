"""A run's own outputs in its folder: metrics.json, curves.png and w1.png after a fit, predictions.csv after predict."""

import json
import math
from pathlib import Path

import lightning as L
import torch

from lightning_ref.gradient_check import GradientCrossCheck
from lightning_ref.plots import plot_curves, plot_w1
from lightning_ref.recorder import RunRecorder


def fit_metrics(
    trainer: L.Trainer, model, datamodule, rec: RunRecorder, tested: list | None, tested_ckpt: str | None, resumed_from
) -> dict:
    """metrics.json's content: the run, its best checkpoint, the test of `tested_ckpt`, its speed, the cross-check, its
    history."""
    ckpt_cb = trainer.checkpoint_callback
    best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
    cross = next((c for c in trainer.callbacks if isinstance(c, GradientCrossCheck)), None)
    last = rec.history[-1] if rec.history else {}
    hp = model.hparams
    return {
        "impl": hp.impl,
        "dataset": datamodule.dataset,
        "epochs": trainer.current_epoch,  # epochs completed, counting those before a resume
        "hidden": hp.hidden,
        "test_acc": number(tested[0].get("test_acc")) if tested else None,
        "test_loss": number(tested[0].get("test_loss")) if tested else None,
        "tested_ckpt": tested_ckpt if tested else None,
        # the best checkpoint's score: its val_acc when (as by default) val_acc is the monitored metric
        "monitor": ckpt_cb.monitor if ckpt_cb is not None else None,
        "best_score": number(ckpt_cb.best_model_score) if ckpt_cb is not None else None,
        "val_acc": number(ckpt_cb.best_model_score) if ckpt_cb is not None and ckpt_cb.monitor == "val_acc" else None,
        "train_loss": last.get("train_loss"),
        "wall_s": round(rec.wall_s, 3),
        "samples_per_s": round(rec.samples / rec.wall_s, 1) if rec.wall_s > 0 else None,
        "train_samples": rec.samples,
        "world_size": trainer.world_size,
        "best_ckpt": best or None,
        "last_ckpt": str(Path(ckpt_cb.dirpath, "last.ckpt")) if ckpt_cb is not None and ckpt_cb.save_last else None,
        "crosscheck_steps": cross.checks if cross is not None else 0,
        "crosscheck_worst_rel": cross.worst_rel if cross is not None and cross.checks else None,
        "resumed_from": resumed_from,
        "history": rec.history,
    }


def write_fit_outputs(run_dir: Path, metrics: dict, model, datamodule) -> Path:
    """metrics.json, curves.png (loss, accuracy, learning rate against epoch) and w1.png (each hidden unit's weights
    as an image) into run_dir; the path of metrics.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(metrics["history"], run_dir / "curves.png", test_acc=metrics["test_acc"])
    w1 = model.net.w1 if model.hparams.impl == "manual" else model.net[1].weight.T
    plot_w1(w1, model.input_shape, run_dir / "w1.png", std=datamodule.std)
    return path


class PredictionsCSV(L.Callback):
    """predictions.csv, written batch by batch as predict runs (so it needs no predictions kept in memory:
    `--return_predictions false` works): one row per image in the split's order: index, label, predicted class,
    then p_0..p_{C-1}, from predict_step's (p (N,C), y (N,)). Every rank predicts the whole split; rank 0 writes.
    A plain callback, not Lightning's BasePredictionWriter: the rows are numbered in the split's order, so it needs
    no batch indices, which Lightning finds only in a DataLoader's sampler (and warns when it can't)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = 0

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.is_global_zero:
            return
        p, y = outputs[0].float().cpu(), outputs[1].cpu()
        if self.rows == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = ",".join(["index", "label", "predicted", *(f"p_{c}" for c in range(p.shape[1]))])
            self.path.write_text(header + "\n")
        with open(self.path, "a") as f:
            rows = zip(y.tolist(), p.argmax(1).tolist(), p.tolist(), strict=True)  # argmax: the first of ties
            for i, (label, predicted, row) in enumerate(rows, start=self.rows):
                f.write(f"{i},{label},{predicted}," + ",".join(f"{v:.8g}" for v in row) + "\n")
        self.rows += len(y)


def number(v: object) -> float | None:
    """A metric as a plain float (None when absent or not finite)."""
    if v is None:
        return None
    v = float(v.item() if isinstance(v, torch.Tensor) else v)
    return v if math.isfinite(v) else None
