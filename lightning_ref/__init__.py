"""The Lightning layer around manualnet: what a Lightning script needs to train, test and predict with the net.

import lightning as L
from lightning_ref import GradientCrossCheck, ImageDataModule, TwoLayerClassifier

dm = ImageDataModule(dataset="synthetic")
model = TwoLayerClassifier(hidden=512)  # input shape and classes come from the data module
L.Trainer(max_epochs=3, callbacks=[GradientCrossCheck()]).fit(model, datamodule=dm)
"""

import importlib

# name -> the module that defines it, imported on first use: `import lightning_ref.reference` (the harness's and the
# scripts' autograd reference) stays free of Lightning, torchvision and matplotlib.
_WHERE = {
    "DataFileError": "sources",
    "DataMissingError": "cache",
    "GradientCrossCheck": "gradient_check",
    "GradientMismatchError": "gradient_check",
    "GradientMismatchWarning": "gradient_check",
    "ImageDataModule": "data",
    "ModelCheckpoint": "checkpoint",
    "RunRecorder": "recorder",
    "TensorBatches": "batches",
    "TwoLayerClassifier": "module",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'lightning_ref' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lightning_ref.{_WHERE[name]}"), name)
