"""Shared fixtures: small fake data sets written in each data set's real on-disk format, as torchvision reads them.

Fixtures (each returns the data root to pass as ImageDataModule(root=...), with download=False):

    fake_cifar10          600 train (data_batch_1..5, 120 each) + 200 test images, 10 classes, in
                          root/cifar-10-batches-py. Each class has its own mean colour plus noise, so a model can
                          learn it. torchvision's md5 table does not know these files: for the test's duration the
                          fixture turns lightning_ref.sources.check_md5 off (cifar_checksums_off).
    fake_cifar10_cached   the same, with the module's cache (root/manualnet-cache) already built, so that code in a
                          subprocess (CLI, DDP), which does not inherit the patch, loads the cache and never decodes,
                          as long as the source files are left untouched.
    fake_cifar100         root/cifar-100-python/{train,test,meta}: 300 train + 100 test, 100 fine classes.
    fake_mnist            root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed): 300 + 100.
    fake_fashion_mnist    the same under root/FashionMNIST/raw.

Every test runs with XDG_CACHE_HOME in pytest's temporary folder (autouse), so a cache that falls back to the user
cache folder never lands in the real ~/.cache; subprocesses inherit it.

The writers (write_cifar, write_mnist, write_idx, tar_cifar) and fake_images are plain functions, importable as
`from conftest import ...` for tests that need their own images (a known pixel, images that encode their index).
"""

import gzip
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

import lightning_ref.sources
from manualnet.functional import TwoLayerNetFn


def fake_images(n: int, shape: tuple[int, int, int], num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n,C,H,W) and int64 labels (n,): each class a mean colour (per channel) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, size=(num_classes, shape[0], 1, 1))
    y = rng.integers(0, num_classes, size=n)
    x = colours[y] + rng.normal(0, 30, size=(n, *shape))
    return np.clip(np.round(x), 0, 255).astype(np.uint8), y.astype(np.int64)


def write_cifar(root: Path, x_train, y_train, x_test, y_test, *, hundred: bool = False) -> Path:
    """Write CIFAR-10 (root/cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta) or, with `hundred`,
    CIFAR-100 (root/cifar-100-python: train, test, meta) as torchvision reads them: pickled dicts with str keys,
    `data` uint8 (N, 3072) holding each image's 1024 R, then 1024 G, then 1024 B values, row-major."""
    folder = Path(root, "cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, obj: dict) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    def batch(x, y, label: str) -> dict:
        x = np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), 3 * 32 * 32)  # (N,3,32,32) -> R|G|B planes
        names = [f"img_{i}.png" for i in range(len(x))]
        if hundred:
            return {
                "batch_label": label,
                "fine_labels": [int(v) for v in y],
                "coarse_labels": [int(v) // 5 for v in y],
                "data": x,
                "filenames": names,
            }
        return {"batch_label": label, "labels": [int(v) for v in y], "data": x, "filenames": names}

    if hundred:
        dump("train", batch(x_train, y_train, "training batch 1 of 1"))
        dump("test", batch(x_test, y_test, "testing batch 1 of 1"))
        dump(
            "meta",
            {
                "fine_label_names": [f"fine_{i}" for i in range(100)],
                "coarse_label_names": [f"coarse_{i}" for i in range(20)],
            },
        )
    else:
        for i, (xb, yb) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5), strict=True), start=1):
            dump(f"data_batch_{i}", batch(xb, yb, f"training batch {i} of 5"))
        dump("test_batch", batch(x_test, y_test, "testing batch 1 of 1"))
        meta = {"label_names": [f"class_{i}" for i in range(10)], "num_cases_per_batch": len(x_train) // 5}
        dump("batches.meta", {**meta, "num_vis": 3072})
    return Path(root)


def write_idx(folder: Path, x_train, y_train, x_test, y_test, *, gz: bool = False) -> Path:
    """Write {train,t10k}-{images-idx3,labels-idx1}-ubyte into `folder` itself, as the data set's authors ship them:
    big-endian magic (0x0803 images, 0x0801 labels), sizes, then the uint8 values; gzipped (name + .gz) with `gz`,
    at another compression level than the originals, as Debian's recompressed copies are."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        x = np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), 28, 28)
        y = np.asarray(y, dtype=np.uint8)
        for name, data in (
            (f"{prefix}-images-idx3-ubyte", struct.pack(">iiii", 0x0803, len(x), 28, 28) + x.tobytes()),
            (f"{prefix}-labels-idx1-ubyte", struct.pack(">ii", 0x0801, len(y)) + y.tobytes()),
        ):
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
            else:
                (folder / name).write_bytes(data)
    return folder


def write_mnist(root: Path, folder: str, x_train, y_train, x_test, y_test) -> Path:
    """Write root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (folder "MNIST" or "FashionMNIST"),
    uncompressed, as torchvision's download leaves them."""
    write_idx(Path(root, folder, "raw"), x_train, y_train, x_test, y_test)
    return Path(root)


def tar_cifar(root: Path, hundred: bool = False) -> Path:
    """Pack root/<cifar-10-batches-py|cifar-100-python> into root/<cifar-10-python|cifar-100-python>.tar.gz, as
    distributed, and remove the folder."""
    folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
    archive = Path(root, "cifar-100-python.tar.gz" if hundred else "cifar-10-python.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(Path(root, folder), arcname=folder)
    shutil.rmtree(Path(root, folder))
    return archive


@pytest.fixture(autouse=True)
def user_cache_in_tmp(monkeypatch, tmp_path_factory):
    """The user cache folder ($XDG_CACHE_HOME) inside pytest's temporary folder, for this process and subprocesses."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture
def cifar_checksums_off(monkeypatch):
    """torchvision's CIFAR md5 table does not know fake files: skip the md5 check (the content checks still run)."""
    monkeypatch.setattr(lightning_ref.sources, "check_md5", lambda path, data, expected: None)


@pytest.fixture
def fake_cifar10(tmp_path, cifar_checksums_off) -> Path:
    """Root of a 600 + 200 image CIFAR-10 in torchvision's layout (see the module docstring)."""
    x, y = fake_images(800, (3, 32, 32), 10, seed=10)
    return write_cifar(tmp_path / "data", x[:600], y[:600], x[600:], y[600:])


@pytest.fixture
def fake_cifar10_cached(fake_cifar10) -> Path:
    """fake_cifar10 with the cache built, for code that runs in a subprocess (see the module docstring)."""
    from lightning_ref.data import ImageDataModule

    ImageDataModule("cifar10", root=str(fake_cifar10), download=False).prepare_data()
    return fake_cifar10


@pytest.fixture
def fake_cifar100(tmp_path, cifar_checksums_off) -> Path:
    """Root of a 300 + 100 image CIFAR-100 (100 fine classes) in torchvision's layout."""
    x, y = fake_images(400, (3, 32, 32), 100, seed=100)
    return write_cifar(tmp_path / "data", x[:300], y[:300], x[300:], y[300:], hundred=True)


@pytest.fixture
def fake_mnist(tmp_path) -> Path:
    """Root of a 300 + 100 image MNIST in torchvision's raw layout."""
    x, y = fake_images(400, (1, 28, 28), 10, seed=1)
    return write_mnist(tmp_path / "data", "MNIST", x[:300], y[:300], x[300:], y[300:])


@pytest.fixture
def fake_fashion_mnist(tmp_path) -> Path:
    """Root of a 300 + 100 image Fashion-MNIST in torchvision's raw layout."""
    x, y = fake_images(400, (1, 28, 28), 10, seed=2)
    return write_mnist(tmp_path / "data", "FashionMNIST", x[:300], y[:300], x[300:], y[300:])


@pytest.fixture
def wrong_dw1(monkeypatch):
    """A hand-written backward with a bug: dW1 off by 1e-3 of itself (the cross-checks must catch it)."""
    right = TwoLayerNetFn.backward

    def wrong(ctx, ds2, dx2_out):
        dx, dw1, db1, dw2, db2, dm = right(ctx, ds2, dx2_out)
        return dx, None if dw1 is None else dw1 * 1.001, db1, dw2, db2, dm

    monkeypatch.setattr(TwoLayerNetFn, "backward", staticmethod(wrong))


class _WithoutMask:
    """TwoLayerNetFn's ctx as if no mask had been given: saved_tensors with m = None."""

    def __init__(self, ctx):
        self.saved_tensors = (*ctx.saved_tensors[:4], None)
        self.needs_input_grad, self.w1_transposed = ctx.needs_input_grad, ctx.w1_transposed


@pytest.fixture
def mask_left_out_of_backward(monkeypatch):
    """A hand-written backward that forgets the dropout mask on the way to dS1 (dS1 = dX2 * [S1 > 0])."""
    right = TwoLayerNetFn.backward
    monkeypatch.setattr(TwoLayerNetFn, "backward", staticmethod(lambda ctx, *g: right(_WithoutMask(ctx), *g)))
