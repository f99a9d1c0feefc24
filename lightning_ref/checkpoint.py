"""ModelCheckpoint: Lightning's, with last.ckpt at the end of every epoch and the best checkpoint kept across a resume.

Lightning writes last.ckpt only in the epochs that also saved a top-k checkpoint, so with save_top_k=1 it is the
last *improving* epoch: a run resumed from it would redo epochs. Here last.ckpt is the end of the newest epoch.

A fit resumed into another folder (trainer.fit(..., ckpt_path=C) with a new dirpath, as every manualnet-train run
has) keeps the best checkpoint: Lightning keeps only its path and forgets its score when the folder changed. Here the
best checkpoint from before the stop is copied into the new folder when training starts, with its score, so that the
best of the whole run is tracked and tested. It is looked for where the checkpoint recorded it, then beside C (a
checkpoints folder moved as a whole); when it is in neither place, a line on stderr says so and the best is tracked
again from the resumed epochs.
"""

import shutil
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

# The state that names the best checkpoints (dropped when the best one is not found).
BEST_KEYS = ("best_k_models", "kth_best_model_path", "kth_value")


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint (same arguments), with last.ckpt written at the end of every training epoch
    (save_last) and the best checkpoint carried into a resumed fit's new folder."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._resumed_from: str | None = None  # the checkpoint a fit resumes from
        self._global_zero = True
        self._carry: tuple[Path, Path] | None = None  # (from, to): the best checkpoint, copied when training starts

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's hook writes the top-k checkpoint (and last.ckpt only with one); last.ckpt is written below.
        save_last, self.save_last = self.save_last, False
        try:
            super().on_train_epoch_end(trainer, pl_module)
        finally:
            self.save_last = save_last
        if self.save_last and not trainer.fast_dev_run:  # after this epoch's validation (Lightning runs it first)
            self.last_model_path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
            trainer.save_checkpoint(self.last_model_path, weights_only=self.save_weights_only)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Nothing: last.ckpt is written at every epoch end (Lightning's hook writes it again when no top-k was)."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._resumed_from = trainer.ckpt_path
        self._global_zero = trainer.is_global_zero

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        if self.dirpath is not None:  # a fit (the folder is known): the best is this folder's, or found and copied
            self._move_best(state)
        super().load_state_dict(state)
        self.last_model_path = ""  # this run's last.ckpt is its own; the stopped run's is never touched

    def _move_best(self, state: dict) -> None:
        """Point `state` (the checkpoint's record of this callback) at this run's folder, with the best checkpoint
        from before the stop to be copied there (found beside where it was recorded or beside the resumed file)."""
        old, score = state.get("best_model_path") or "", state.get("best_model_score")
        beside = Path(self._resumed_from or ".").parent / Path(old).name
        found = next((f for f in (Path(old), beside) if old and f.is_file()), None)
        state["dirpath"] = self.dirpath
        if found is not None:
            new = str(Path(self.dirpath, found.name))
            state.update(best_model_path=new, best_k_models={new: score}, kth_best_model_path=new, kth_value=score)
            self._carry = (found, Path(new)) if found.resolve() != Path(new).resolve() else None
            return
        if old and self._global_zero:
            value = None if score is None else float(score)
            print(
                f"manualnet-train: note: the best checkpoint before the stop ({old}, {self.monitor} {value}) is "
                f"neither there nor beside {self._resumed_from}: the best is tracked again from the resumed epochs",
                file=sys.stderr,
            )
        for key in BEST_KEYS:
            state.pop(key, None)
        state.update(best_model_path="", best_model_score=None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._carry is not None and trainer.is_global_zero:
            src, dst = self._carry
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
