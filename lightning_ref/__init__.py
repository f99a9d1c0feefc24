"""The Lightning layer around manualnet: what a Lightning script needs to train, test and predict with the net.

import lightning as L
from lightning_ref import GradientCrossCheck, ImageDataModule, TwoLayerClassifier

dm = ImageDataModule(dataset="synthetic")
model = TwoLayerClassifier(hidden=512)  # input shape and classes come from the data module
L.Trainer(max_epochs=3, callbacks=[GradientCrossCheck()]).fit(model, datamodule=dm)
"""

from lightning_ref.batches import TensorBatches
from lightning_ref.cache import DataMissingError
from lightning_ref.checkpoint import ModelCheckpoint
from lightning_ref.data import ImageDataModule
from lightning_ref.gradient_check import GradientCrossCheck, GradientMismatchError, GradientMismatchWarning
from lightning_ref.module import TwoLayerClassifier
from lightning_ref.recorder import RunRecorder
from lightning_ref.sources import DataFileError

__all__ = [
    "DataFileError",
    "DataMissingError",
    "GradientCrossCheck",
    "GradientMismatchError",
    "GradientMismatchWarning",
    "ImageDataModule",
    "ModelCheckpoint",
    "RunRecorder",
    "TensorBatches",
    "TwoLayerClassifier",
]
