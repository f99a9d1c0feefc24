"""ImageDataModule: CIFAR-10/100, MNIST, Fashion-MNIST or generated images as uint8 tensors, batched on-device.

The path of one training batch (all whole-batch torch ops, on the device where the data set lives):

    pos = [i*G + r*B, i*G + (r+1)*B)            this rank's share of global batch i
    u8  = x[perm[pos]]                          (B,C,H,W) uint8
    u8  = crop_flip(u8, shift[pos], flip[pos])  random crop of the zero-padded image, horizontal flip (each optional)
    x   = (u8 / 255 - mean) / std               float32, per channel

with perm, shift and flip drawn once per epoch from (seed, epoch), B the per-rank batch, G = B * world_size the global
batch and r the rank, so under DDP the ranks together see exactly the samples and augmentations of one process with
batch G. Each split is decoded once from the data set's original files (lightning_ref.sources: torchvision's layout or
a folder holding the files themselves, checked before use) and cached as plain tensors (see cache_folder()).
"""

import hashlib
import http.client
import json
import math
import os
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision import datasets

from lightning_ref.sources import DataFileError, decode_split, find, is_cifar, source_of, split_names
from manualnet.validate import UsageError, check_int, check_labels

DOWNLOAD_TIMEOUT_S = 60  # per socket operation, so a network that swallows packets fails instead of hanging
CACHE_VERSION = 2  # bump when the cached layout changes


class DataMissingError(RuntimeError):
    """The data set is not on disk and could not be downloaded; the message is one line saying how to provide it."""


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


def _generator(*words: int) -> torch.Generator:
    """A CPU generator seeded from the integers `words` (e.g. (seed, epoch)), well mixed by numpy's SeedSequence."""
    state = np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


# Generator streams, so that no two uses of one seed draw the same numbers.
VAL_STREAM, EPOCH_STREAM, TEMPLATE_STREAM, TRAIN_STREAM, TEST_STREAM = range(5)


def crop_flip(x: Tensor, shift: Tensor, flip: Tensor, pad: int) -> Tensor:
    """Zero-pad x (B,C,H,W) by `pad` on each side, crop an HxW window at (shift[:,0], shift[:,1]) in [0, 2*pad],
    then mirror the width where flip (B,) is True: out[b,c,h,w] = xp[b, c, sh+h, sw + (W-1-w if flip else w)].
    One gather for the whole batch."""
    B, C, H, W = x.shape
    Wp = W + 2 * pad
    xp = F.pad(x, (pad, pad, pad, pad))  # (B,C,H+2p,W+2p)
    h = torch.arange(H, device=x.device)
    w = torch.arange(W, device=x.device)
    rows = shift[:, 0, None] + h  # (B,H)
    cols = shift[:, 1, None] + torch.where(flip[:, None], W - 1 - w, w)  # (B,W)
    src = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, H * W).expand(B, C, H * W)
    return xp.flatten(2).gather(2, src).view(B, C, H, W)


class TensorBatches:
    """Batches (x, y) over uint8 images x (N,C,H,W) and int64 labels y (N,), built on their device.

    x comes out float32 and normalised: (u8 / 255 - mean) / std, with mean and std (C,) in [0, 1] pixel units.
    train=True: each epoch shuffles and draws, per sample, a crop offset in [0, 2*crop_pad]^2 (when crop_pad > 0; the
    image is zero-padded by crop_pad first) and a coin for a horizontal flip (when flip) from the generator seeded
    by (seed, epoch), where `epoch` is an int or a function returning the current one (read when iteration starts);
    rank `rank` of `world_size` takes its contiguous share of each global batch of batch_size * world_size samples;
    the last incomplete global batch is dropped, so every step has the same size on every rank.
    train=False: all samples in order, the last batch possibly smaller; every rank sees all of them.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        mean: Tensor,
        std: Tensor,
        *,
        train: bool = False,
        crop_pad: int = 0,
        flip: bool = False,
        seed: int = 0,
        epoch: int | Callable[[], int] = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.train, self.crop_pad, self.flip, self.seed, self.epoch = train, crop_pad, flip, seed, epoch
        self.rank, self.world_size = rank, world_size
        # (u8 / 255 - mean) / std = u8 * scale + shift, per channel, shaped (1,C,1,1) to broadcast over the batch.
        std = std.to(torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1).to(x.device)
        self.shift = (-mean.to(torch.float32) / std).view(1, -1, 1, 1).to(x.device)

    def __len__(self) -> int:
        if self.train:
            return len(self.x) // (self.batch_size * self.world_size)
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.train:
            for i in range(0, len(self.x), self.batch_size):
                yield self._normalise(self.x[i : i + self.batch_size]), self.y[i : i + self.batch_size]
            return
        n, device = len(self.x), self.x.device
        epoch = self.epoch() if callable(self.epoch) else self.epoch
        # One draw per epoch on the CPU (the same numbers on every device), indexed by position in the epoch.
        gen = _generator(self.seed, EPOCH_STREAM, epoch)
        perm = torch.randperm(n, generator=gen).to(device)
        augment, p = self.crop_pad > 0 or self.flip, self.crop_pad
        if augment:
            shift = torch.randint(0, 2 * p + 1, (n, 2), generator=gen) if p else torch.zeros(n, 2, dtype=torch.int64)
            flip = (torch.rand(n, generator=gen) < 0.5) if self.flip else torch.zeros(n, dtype=torch.bool)
            shift, flip = shift.to(device), flip.to(device)
        B, G = self.batch_size, self.batch_size * self.world_size
        for i in range(len(self)):
            pos = slice(i * G + self.rank * B, i * G + (self.rank + 1) * B)
            idx = perm[pos]
            u8 = self.x.index_select(0, idx)
            if augment:
                u8 = crop_flip(u8, shift[pos], flip[pos], p)
            yield self._normalise(u8), self.y.index_select(0, idx)

    def _normalise(self, u8: Tensor) -> Tensor:
        return (u8.to(torch.float32) * self.scale).add_(self.shift)


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
            order = torch.randperm(len(x), generator=_generator(self.seed, VAL_STREAM))
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
        """Where the decoded splits are cached: cache_dir when given; else root/manualnet-cache when the files are in
        torchvision's layout under root and root is writable; else $XDG_CACHE_HOME/manualnet/<hash of root> (by
        default under ~/.cache), so that a read-only root or a folder of original files is never written to."""
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        cls = self.spec.cls
        layout = Path(self.root, cls.base_folder if is_cifar(cls) else cls.__name__)
        files = self._files(download=False)
        if all(layout in source_of(f).parents for f in files.values()) and os.access(self.root, os.W_OK):
            return Path(self.root, "manualnet-cache")
        home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return home / "manualnet" / hashlib.sha1(str(Path(self.root).resolve()).encode()).hexdigest()[:12]

    def _files(self, download: bool) -> dict[str, Path]:
        """The data set's files (lightning_ref.sources.find), downloaded into torchvision's layout first when they are
        missing or incomplete and `download`; DataMissingError when they are missing and can't be downloaded."""
        cls = self.spec.cls
        try:
            files = find(cls, self.root)
        except DataFileError:
            if not download:
                raise
            files = None
        if files is None and download:
            try:
                with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                    cls(self.root, train=True, download=True)
            except (OSError, RuntimeError, http.client.HTTPException) as e:
                raise self._missing(f"could not be downloaded ({' '.join(str(e).split())})") from e
            files = find(cls, self.root)
        if files is None:
            if self.download:
                raise self._missing("setup() does not download (call prepare_data() first)")
            raise self._missing("downloads are off (download=False)")
        return files

    def _load_split(self, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        """uint8 images (N,C,H,W) and int64 labels (N,) of one split: from the cache when it matches the source files
        (their paths, sizes and modification times), else decoded (and checked) from them and cached."""
        files = self._files(download)
        split = "train" if train else "test"
        cache = self.cache_folder() / f"{self.dataset}-{split}.pt"
        key = _files_key(sorted({source_of(f) for n, f in files.items() if n in split_names(self.spec.cls, train)}))
        if cache.exists():
            try:
                saved = torch.load(cache, weights_only=True)
                if saved["key"] == key:
                    return saved["x"], saved["y"]
            except Exception as e:  # a foreign or damaged cache is rebuilt, never trusted
                warnings.warn(
                    f"ignoring unreadable cache {cache} ({type(e).__name__}: {e}); rebuilding it", stacklevel=2
                )
        x, y = decode_split(self.spec.cls, files, train, self.num_classes)
        _save_atomic({"key": key, "x": x, "y": y}, cache)
        return x, y

    def _missing(self, reason: str) -> DataMissingError:
        cls = self.spec.cls
        folder = os.path.join(self.root, cls.base_folder if is_cifar(cls) else os.path.join(cls.__name__, "raw"))
        if is_cifar(cls):
            how = f"download {cls.url} and extract it into {self.root}{os.sep} (or leave the .tar.gz there)"
        else:
            files = ", ".join(name for name, _ in cls.resources)
            how = f"download {files} from {cls.mirrors[0]} into {self.root}{os.sep} (.gz or unpacked)"
        return DataMissingError(
            f"{self.spec.name} not found at {folder} or in {self.root} and {reason}: {how}, "
            f"or point root (--data.root) at a folder that has it"
        )

    # ---- generated data -----------------------------------------------------------------------------------------

    def _generate(self, train: bool) -> tuple[Tensor, Tensor]:
        """Synthetic split. Each class is a smooth, left-right symmetric colour pattern; an image is its class's
        pattern at a random contrast, over a random mixture of 16 other smooth patterns (stronger than the class's),
        a random brightness and pixel noise: learnable, with classes that overlap (a two-layer net climbs from about
        55% to 80% test accuracy over its first epochs on the default sizes)."""
        C, H, W = self.input_shape
        coarse = torch.rand(self.num_classes + 16, C, 4, 4, generator=_generator(self.seed, TEMPLATE_STREAM)) * 2 - 1
        smooth = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)  # in [-1, 1]
        templates = (smooth[: self.num_classes] + smooth[: self.num_classes].flip(-1)) / 2  # a flip keeps the class
        distractors = smooth[self.num_classes :].flatten(1)  # (16, C*H*W)
        n = self.synthetic_train if train else self.synthetic_test
        gen = _generator(self.seed, TRAIN_STREAM if train else TEST_STREAM)
        y = torch.randint(0, self.num_classes, (n,), generator=gen)
        x = torch.empty(n, C, H, W, dtype=torch.uint8)
        for i in range(0, n, 4096):  # in chunks, to bound the float32 temporaries
            yc = y[i : i + 4096]
            m = len(yc)
            contrast = 0.5 + torch.rand(m, 1, 1, 1, generator=gen)
            mixture = (torch.randn(m, len(distractors), generator=gen) / 4) @ distractors
            brightness = torch.randn(m, 1, 1, 1, generator=gen)
            img = torch.randn(m, C, H, W, generator=gen).mul_(40)  # pixel noise
            img.add_(templates[yc].mul_(25 * contrast)).add_(mixture.view(m, C, H, W), alpha=80)
            img.add_(128 + 20 * brightness)
            x[i : i + m] = img.round_().clamp_(0, 255).to(torch.uint8)
        return x, y


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


def _files_key(files: list[Path]) -> str:
    """Identity of the source files: (absolute path, size, mtime) each."""
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return json.dumps({"version": CACHE_VERSION, "files": stats})


def _save_atomic(obj: dict, path: Path) -> None:
    """torch.save into a temporary file beside `path`, then rename over it: readers see the old file or the new one,
    never a half-written one. A cache that can't be written (read-only root) only costs a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as e:
        warnings.warn(f"not caching {path} ({e})", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        warnings.warn(f"not caching {path} ({e})", stacklevel=3)


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give urllib's sockets (torchvision downloads with no timeout) a timeout while the block runs."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
