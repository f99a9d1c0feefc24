"""EMAWeights: Lightning's EMAWeightAveraging, whose averaged weights are the ones validated, tested, checkpointed and
resumed, with its checkpoint hook limited to a resumed fit.

Lightning's hook (WeightAveraging.on_load_checkpoint) loads a checkpoint's raw weights ("current_model_state") over
its averaged ones ("state_dict") whenever the callback has an average, which it keeps after a fit: a `trainer.test`
of a checkpoint by the trainer that fitted would test the raw weights. Outside a fit the checkpoint's state_dict, the
averaged weights, is what a test, validation or prediction must use, so the hook runs only when a fit resumes.
"""

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMAWeights(EMAWeightAveraging):
    """An exponential moving average of the weights, updated after every optimizer step with `decay`."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
