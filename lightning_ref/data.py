"""ImageDataModule: CIFAR-10/100, MNIST, Fashion-MNIST or generated images as uint8 tensors, batched on-device.

Batches are cut, shuffled, augmented and normalised as whole tensors on the device where the data set lives
(lightning_ref.batches). Each split is decoded once from the data set's original files (lightning_ref.sources:
torchvision's layout or a folder holding the files themselves, checked before use) and cached as plain tensors
(lightning_ref.cache); "synthetic" is generated (lightning_ref.synthetic).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torchvision import datasets

from lightning_ref.batches import TensorBatches
from lightning_ref.cache import cache_folder, find_files, load_split
from lightning_ref.errors import UsageError
from lightning_ref.seeds import VAL_STREAM, seeded_generator
from lightning_ref.synthetic import generate
from manualnet.validate import check_int, check_labels


@dataclass(frozen=True)
class Spec:
    """What distinguishes one data set: its torchvision class (names, downloads), image shape, classes, and why a
    horizontal flip would change its labels (None where it keeps them)."""

    name: str
    cls: type | None  # torchvision dataset class; None for generated data
    input_shape: tuple[int, int, int]
    num_classes: int
    no_flip: str | None = None


SPECS = {
    "cifar10": Spec("CIFAR-10", datasets.CIFAR10, (3, 32, 32), 10),
    "cifar100": Spec("CIFAR-100", datasets.CIFAR100, (3, 32, 32), 100),
    "mnist": Spec("MNIST", datasets.MNIST, (1, 28, 28), 10, no_flip="a mirrored 2, 3, 4, 5, 6, 7 or 9 is no digit"),
    "fashion-mnist": Spec("Fashion-MNIST", datasets.FashionMNIST, (1, 28, 28), 10),  # a mirrored shoe is a shoe
    "synthetic": Spec("synthetic", None, (3, 32, 32), 10),  # its class patterns are left-right symmetric
}


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {value!r}")


class ImageDataModule(L.LightningDataModule):
    """CIFAR-10 (default), CIFAR-100, MNIST, Fashion-MNIST or "synthetic" (generated, no disk) as on-device tensors.

    Real data sets are read from `root`: in torchvision's layout (root/cifar-10-batches-py, root/cifar-100-python,
    root/MNIST/raw, root/FashionMNIST/raw), where prepare_data() downloads them when `download` is true and they are
    missing, or from a folder that holds the original files themselves (the four idx files, .gz or unpacked; the
    extracted CIFAR batches; the CIFAR .tar.gz), e.g. root=/usr/share/datasets/fashion-mnist (Debian's package).
    lightning_ref.sources says where it looks and what it checks. Each split is decoded once into the cache folder
    (cache_folder(): `cache_dir` when given, else root/manualnet-cache when the files are in torchvision's layout and
    root is writable, else $XDG_CACHE_HOME/manualnet, by default ~/.cache/manualnet), so a read-only root or a folder
    of original files is only read.
    After setup(): num_classes, input_shape (C,H,W) (both known from __init__ on), mean/std (C,) float32 in [0, 1]
    pixel units (population statistics of the training split, validation held out), and the uint8 splits
    x_train/y_train, x_val/y_val, x_test/y_test on the device the data lives on (the trainer's CUDA device, else CPU).
    `val_size` images, chosen by `seed`, are held out of the training set for validation. Batches are TensorBatches:
    training batches shuffled and augmented from (seed, epoch), the epoch taken from the attached trainer's
    current_epoch, else from set_epoch(). Augmentation, each switch on its own: `crop_pad` > 0 crops a random
    window of the image zero-padded by crop_pad pixels (0: no crop), `flip` mirrors half the images left-right (refused
    for MNIST, whose digits it would change). The last incomplete training batch is dropped (every step has the full
    batch); evaluation keeps every sample, and under DDP every rank evaluates the whole split (exact metrics with no
    padded duplicates; cheap next to training). val_size=0 turns validation off. predict_dataloader() gives the
    images of `predict_split` ("test", "val" or "train") in order, as the test split's are given.
    "synthetic": CIFAR-shaped images of 10 classes (class colour patterns plus noise), `synthetic_train` for training
    (validation included) and `synthetic_test` for testing, generated from `seed`.

    Args:
        dataset: cifar10, cifar100, mnist, fashion-mnist or synthetic (generated; no files).
        root: the folder holding the data set (torchvision's layout, or the original files themselves).
        batch_size: training images per optimizer step and process.
        val_size: training images held out for validation (0: no validation).
        crop_pad: random crops of the image zero-padded by this many pixels (0: no crop).
        flip: mirror half the training images left-right (refused for MNIST).
        download: download a missing data set into root (torchvision's layout).
        cache_dir: where the decoded splits are cached (default: beside the data, else the user cache folder).
        seed: the validation split, the batch order and augmentation (and synthetic's images); the CLI sets it from
            seed_everything.
        eval_batch_size: images per batch in validation, test and predict.
        synthetic_train: synthetic's training images (validation included).
        synthetic_test: synthetic's test images.
        predict_split: the split predict runs on: test, val or train.
    """

    def __init__(
        self,
        dataset: str = "cifar10",
        root: str = "data",
        batch_size: int = 256,
        val_size: int = 5000,
        crop_pad: int = 0,
        flip: bool = False,
        download: bool = True,
        cache_dir: str | None = None,
        seed: int = 0,
        eval_batch_size: int = 1024,
        synthetic_train: int = 10000,
        synthetic_test: int = 2000,
        predict_split: Literal["test", "val", "train"] = "test",
    ) -> None:
        super().__init__()
        # The arguments go into every checkpoint (datamodule_hyper_parameters), so that test, validate and predict
        # rebuild this data module from a checkpoint alone. Not to the logger: the model logs its own hyperparameters,
        # and Lightning refuses to log two different values of one key (both have a `seed`).
        self.save_hyperparameters(logger=False)
        if dataset not in SPECS:
            raise UsageError(f"dataset: expected one of {', '.join(map(repr, SPECS))}, got {dataset!r}")
        for name, path in (("root", root), ("cache_dir", cache_dir)):
            if not isinstance(path, (str, os.PathLike)) and not (name == "cache_dir" and path is None):
                raise TypeError(f"{name}: expected a path (str), got {path!r}")
        spec = SPECS[dataset]
        check_int("batch_size", batch_size, 1)
        check_int("eval_batch_size", eval_batch_size, 1)
        check_int("val_size", val_size, 0)
        check_int("crop_pad", crop_pad, 0)
        side = min(spec.input_shape[1:])
        if crop_pad >= side:  # a window could then land wholly in the padding: an all-zero image
            raise UsageError(f"crop_pad: expected less than the image side {side} of {spec.name}, got {crop_pad}")
        check_int("seed", seed, 0)
        check_int("synthetic_train", synthetic_train, 1)
        check_int("synthetic_test", synthetic_test, 1)
        _check_bool("flip", flip)
        _check_bool("download", download)
        if predict_split not in ("test", "val", "train"):
            raise UsageError(f"predict_split: expected 'test', 'val' or 'train', got {predict_split!r}")
        if predict_split == "val" and val_size == 0:
            raise UsageError(
                "predict_split: expected 'test' or 'train' when val_size is 0 (no validation images), got 'val'"
            )
        if flip and spec.no_flip:
            raise UsageError(f"flip: expected false for {spec.name} ({spec.no_flip}), got true")
        self.dataset, self.root, self.spec = dataset, str(root), spec
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.batch_size, self.eval_batch_size, self.val_size = batch_size, eval_batch_size, val_size
        self.crop_pad, self.flip, self.download, self.seed = crop_pad, flip, download, seed
        self.synthetic_train, self.synthetic_test = synthetic_train, synthetic_test
        self.predict_split = predict_split
        self.num_classes: int = self.spec.num_classes
        self.input_shape: tuple[int, int, int] = self.spec.input_shape
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self.x_train = self.y_train = self.x_val = self.y_val = self.x_test = self.y_test = None
        self._epoch = 0

    # ---- epochs -------------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffle and augmentation the training batches use when no trainer is attached."""
        check_int("epoch", epoch, 0)
        self._epoch = epoch

    def current_epoch(self) -> int:
        """The attached trainer's current_epoch, else the one given to set_epoch()."""
        return self.trainer.current_epoch if self.trainer is not None else self._epoch

    # ---- Lightning hooks ----------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download (when `download`) and decode every split into the cache; once per node under DDP."""
        if self.spec.cls is not None:
            for train in (True, False):
                self._load_split(train, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load the splits (from the cache), hold out validation, compute mean/std, move to the trainer's device."""
        if self.x_train is None:
            x, y = self._generate(True) if self.spec.cls is None else self._load_split(True, download=False)
            if self.val_size >= len(x):
                raise UsageError(
                    f"val_size: expected fewer than the {len(x)} training images of {self.dataset}, got {self.val_size}"
                )
            order = torch.randperm(len(x), generator=seeded_generator(self.seed, VAL_STREAM))
            val, train = order[: self.val_size].sort().values, order[self.val_size :].sort().values
            self.x_train, self.y_train = x[train], y[train]
            self.x_val, self.y_val = x[val], y[val]
            self.x_test, self.y_test = (
                self._generate(False) if self.spec.cls is None else self._load_split(False, False)
            )
            self.mean, self.std = _channel_stats(self.x_train)
            for name in ("y_train", "y_val", "y_test"):  # the labels' range, once per data set (not in every step)
                check_labels(getattr(self, name), len(getattr(self, name)), self.num_classes, torch.device("cpu"), name)
        if stage in ("fit", None):  # before any step: a batch larger than the training split
            self._check_batch_size(self.trainer.world_size if self.trainer is not None else 1)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        device = device if device.type == "cuda" else torch.device("cpu")
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            setattr(self, name, getattr(self, name).to(device))

    def _check_batch_size(self, world: int) -> None:
        """UsageError unless one global batch (batch_size per process) fits in the training images."""
        if self.batch_size * world > len(self.x_train):
            raise UsageError(
                f"batch_size: expected at most {len(self.x_train) // world} (the {len(self.x_train)} training images "
                f"over {world} process(es)), got {self.batch_size}"
            )

    def train_dataloader(self) -> TensorBatches:
        """Shuffled, augmented batches of batch_size; under DDP this rank's share of each global batch."""
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        self._check_batch_size(world)
        return TensorBatches(
            self.x_train,
            self.y_train,
            self.batch_size,
            self.mean,
            self.std,
            train=True,
            crop_pad=self.crop_pad,
            flip=self.flip,
            seed=self.seed,
            epoch=self.current_epoch,
            rank=rank,
            world_size=world,
        )

    def val_dataloader(self) -> TensorBatches | list:
        """The held-out validation images in order (no validation when val_size is 0)."""
        if self.val_size == 0:
            return []
        return TensorBatches(self.x_val, self.y_val, self.eval_batch_size, self.mean, self.std)

    def test_dataloader(self) -> TensorBatches:
        """The test split in order."""
        return TensorBatches(self.x_test, self.y_test, self.eval_batch_size, self.mean, self.std)

    def predict_dataloader(self) -> TensorBatches:
        """The images of predict_split in order (train: the training images left after the validation hold-out,
        not shuffled or augmented)."""
        x, y = getattr(self, f"x_{self.predict_split}"), getattr(self, f"y_{self.predict_split}")
        return TensorBatches(x, y, self.eval_batch_size, self.mean, self.std)

    # ---- the files and the cache --------------------------------------------------------------------------------

    def cache_folder(self) -> Path:
        """Where the decoded splits are cached (lightning_ref.cache.cache_folder)."""
        files = self._files(download=False) if self.cache_dir is None else {}
        return cache_folder(self.spec.cls, self.root, self.cache_dir, files)

    def _files(self, download: bool) -> dict[str, Path]:
        return find_files(self.spec.cls, self.spec.name, self.root, download, downloads_on=self.download)

    def _load_split(self, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        """uint8 images (N,C,H,W) and int64 labels (N,) of one split, through the cache."""
        files = self._files(download)
        folder = cache_folder(self.spec.cls, self.root, self.cache_dir, files)
        cache = folder / f"{self.dataset}-{'train' if train else 'test'}.pt"
        return load_split(self.spec.cls, files, train, self.num_classes, cache)

    def _generate(self, train: bool) -> tuple[Tensor, Tensor]:
        n = self.synthetic_train if train else self.synthetic_test
        return generate(n, self.input_shape, self.num_classes, self.seed, train)


def _channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population std (C,) of uint8 images x (N,C,H,W), in [0, 1] units, float32.
    Exact: from each channel's histogram of the 256 values, accumulated in float64."""
    v = torch.arange(256, dtype=torch.float64, device=x.device) / 255
    mean, std = [], []
    for c in range(x.shape[1]):
        count = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        m = (count * v).sum() / count.sum()
        mean.append(m)
        std.append(((count * (v - m) ** 2).sum() / count.sum()).sqrt())
    return torch.stack(mean).float().cpu(), torch.stack(std).float().cpu()
