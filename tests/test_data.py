"""lightning_ref.data: decoding each data set's real on-disk format, the cache, the validation split, statistics,
augmentation, (seed, epoch) batches, DDP sharding, Lightning integration and bad input."""

import math
import os
import pickle
import socket
import warnings
from pathlib import Path
from urllib.error import URLError

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import fake_images, write_cifar, write_mnist
from torch import nn

from lightning_ref.batches import TensorBatches, crop_flip
from lightning_ref.cache import DOWNLOAD_TIMEOUT_S, DataMissingError
from lightning_ref.data import ImageDataModule
from lightning_ref.errors import UsageError

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def ids_images(n: int, shape=(3, 32, 32)) -> np.ndarray:
    """Images whose pixels (0,0,0) and (0,0,1) hold the image's index (low byte, high byte), the rest noise."""
    x = np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return x


def ids(x: torch.Tensor) -> list[int]:
    """The indices encoded by ids_images."""
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


def unnormalise(x: torch.Tensor, dm_or_mean, std=None) -> torch.Tensor:
    """uint8 pixels back from a normalised batch."""
    mean, std = (dm_or_mean.mean, dm_or_mean.std) if std is None else (dm_or_mean, std)
    u = (x * std.view(1, -1, 1, 1).to(x.device) + mean.view(1, -1, 1, 1).to(x.device)) * 255
    return u.round().clamp(0, 255).to(torch.uint8)


def loaded(root, dataset="cifar10", **kw) -> ImageDataModule:
    dm = ImageDataModule(dataset, root=str(root), download=False, **{"val_size": 50, "batch_size": 32, **kw})
    dm.prepare_data()
    dm.setup()
    return dm


# ---- each data set, read from its real format ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, fixture, shape, classes, n_train, n_test",
    [
        ("cifar10", "fake_cifar10", (3, 32, 32), 10, 600, 200),
        ("cifar100", "fake_cifar100", (3, 32, 32), 100, 300, 100),
        ("mnist", "fake_mnist", (1, 28, 28), 10, 300, 100),
        ("fashion-mnist", "fake_fashion_mnist", (1, 28, 28), 10, 300, 100),
    ],
)
def test_each_dataset_loads_with_its_shapes_dtypes_and_classes(
    request, dataset, fixture, shape, classes, n_train, n_test
):
    dm = loaded(request.getfixturevalue(fixture), dataset)
    assert (dm.num_classes, dm.input_shape) == (classes, shape)
    assert dm.x_train.shape == (n_train - 50, *shape) and dm.x_val.shape == (50, *shape)
    assert dm.x_test.shape == (n_test, *shape)
    for x, y in ((dm.x_train, dm.y_train), (dm.x_val, dm.y_val), (dm.x_test, dm.y_test)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and len(x) == len(y)
        assert 0 <= y.min() and y.max() < classes
    assert dm.mean.dtype == torch.float32 and dm.mean.shape == (shape[0],) and dm.std.shape == (shape[0],)
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (32, *shape) and y.dtype == torch.int64 and y.shape == (32,)
    x, y = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (n_test, *shape) and torch.equal(y, dm.y_test)


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_pixel_lands_at_its_channel_row_and_column(tmp_path, cifar_checksums_off, hundred):
    x, y = fake_images(20, (3, 32, 32), 100 if hundred else 10, seed=3)
    x[17] = 0
    x[17, 1, 2, 3] = 200  # test image 7: green, row 2, column 3
    write_cifar(tmp_path, x[:10], y[:10], x[10:], y[10:], hundred=hundred)
    # The format itself: the 1024 G values follow the 1024 R values, row-major.
    with open(tmp_path / ("cifar-100-python/test" if hundred else "cifar-10-batches-py/test_batch"), "rb") as f:
        flat = pickle.load(f, encoding="latin1")["data"][7]
    assert flat[1024 + 2 * 32 + 3] == 200 and flat.sum() == 200
    dm = loaded(tmp_path, "cifar100" if hundred else "cifar10", val_size=2, batch_size=4)
    assert dm.x_test[7, 1, 2, 3] == 200 and dm.x_test[7].sum() == 200
    assert torch.equal(dm.x_test, torch.from_numpy(x[10:])) and torch.equal(dm.y_test, torch.from_numpy(y[10:]))


@pytest.mark.parametrize("folder, dataset", [("MNIST", "mnist"), ("FashionMNIST", "fashion-mnist")])
def test_mnist_pixel_lands_at_its_row_and_column(tmp_path, folder, dataset):
    x, y = fake_images(20, (1, 28, 28), 10, seed=4)
    x[12] = 0
    x[12, 0, 5, 9] = 77
    write_mnist(tmp_path, folder, x[:10], y[:10], x[10:], y[10:])
    raw = (tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    assert raw[16 + 2 * 784 + 5 * 28 + 9] == 77  # after the 16-byte header: image 2, row 5, column 9
    dm = loaded(tmp_path, dataset, val_size=2, batch_size=4)
    assert dm.x_test[2, 0, 5, 9] == 77 and dm.x_test[2].sum() == 77
    assert torch.equal(dm.x_test, torch.from_numpy(x[10:])) and torch.equal(dm.y_test, torch.from_numpy(y[10:]))


# ---- the cache -----------------------------------------------------------------------------------------------------


def test_cache_is_written_and_a_second_setup_never_calls_torchvision(fake_cifar10, monkeypatch):
    first = loaded(fake_cifar10)
    cache = fake_cifar10 / "manualnet-cache"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10-test.pt", "cifar10-train.pt"]

    def fail(*args, **kwargs):
        raise AssertionError("torchvision was asked to decode although the cache is valid")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", fail)
    second = loaded(fake_cifar10)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(second, name))


def test_cache_is_rebuilt_when_a_source_file_changes(fake_cifar10):
    before = loaded(fake_cifar10).x_test
    x, y = fake_images(200, (3, 32, 32), 10, seed=99)
    write_cifar(fake_cifar10 / "new", np.zeros((5, 3, 32, 32), np.uint8), np.zeros(5), x, y)
    os.replace(fake_cifar10 / "new/cifar-10-batches-py/test_batch", fake_cifar10 / "cifar-10-batches-py/test_batch")
    after = loaded(fake_cifar10).x_test
    assert not torch.equal(before, after) and torch.equal(after, torch.from_numpy(x))


def test_damaged_cache_is_ignored_with_a_warning_and_rewritten(fake_cifar10):
    expected = loaded(fake_cifar10).x_test
    cache = fake_cifar10 / "manualnet-cache" / "cifar10-test.pt"
    cache.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable cache"):
        assert torch.equal(loaded(fake_cifar10).x_test, expected)
    assert torch.load(cache, weights_only=True)["x"].shape == expected.shape


def test_interrupted_cache_write_leaves_the_old_cache_and_no_partial_file(fake_cifar10, monkeypatch):
    loaded(fake_cifar10)
    cache = fake_cifar10 / "manualnet-cache"
    old = (cache / "cifar10-test.pt").read_bytes()
    os.utime(fake_cifar10 / "cifar-10-batches-py/test_batch", ns=(1, 1))  # the source "changed": rebuild

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        loaded(fake_cifar10)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10-test.pt", "cifar10-train.pt"]
    assert (cache / "cifar10-test.pt").read_bytes() == old


# ---- validation split and statistics -------------------------------------------------------------------------------


def test_validation_split_is_seeded_sized_and_disjoint_from_training(tmp_path, cifar_checksums_off):
    write_cifar(tmp_path, ids_images(600), np.zeros(600), ids_images(10), np.zeros(10))
    a, b, c = (loaded(tmp_path, val_size=100, seed=s) for s in (0, 0, 1))
    train, val = ids(a.x_train), ids(a.x_val)
    assert len(val) == 100 and sorted(train + val) == list(range(600))
    assert ids(b.x_val) == val and ids(c.x_val) != val


def test_val_size_not_below_the_training_set_raises_naming_both_numbers(fake_cifar10):
    dm = ImageDataModule("cifar10", root=str(fake_cifar10), download=False, val_size=600)
    with pytest.raises(ValueError, match=r"val_size: .*600 training images.*got 600"):
        dm.setup()


def test_mean_and_std_are_the_population_statistics_of_the_training_split(fake_cifar10):
    dm = loaded(fake_cifar10, val_size=300)
    x = dm.x_train.double() / 255
    assert torch.allclose(dm.mean.double(), x.mean((0, 2, 3)), rtol=0, atol=1e-6)
    assert torch.allclose(dm.std.double(), x.std((0, 2, 3), unbiased=False), rtol=0, atol=1e-6)
    everything = torch.cat([dm.x_train, dm.x_val]).double() / 255  # with validation the mean would differ
    assert (dm.mean.double() - everything.mean((0, 2, 3))).abs().max() > 1e-4


def test_batches_are_normalised_with_the_training_statistics(fake_cifar10):
    dm = loaded(fake_cifar10)
    x, _ = next(iter(dm.test_dataloader()))
    assert torch.equal(unnormalise(x, dm), dm.x_test)
    x, _ = next(iter(dm.train_dataloader()))
    assert abs(x.mean().item()) < 0.2 and abs(x.std().item() - 1) < 0.2


# ---- augmentation --------------------------------------------------------------------------------------------------


def naive_crop_flip(x, corner, flip, pad):
    """Per-image reference: pad, slice the window, mirror."""
    out = []
    for img, (sh, sw), f in zip(x, corner.tolist(), flip.tolist(), strict=True):
        window = F.pad(img, (pad, pad, pad, pad))[:, sh : sh + img.shape[1], sw : sw + img.shape[2]]
        out.append(window.flip(-1) if f else window)
    return torch.stack(out)


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_crop_at_the_centre_without_flip_is_the_identity(pad):
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(crop_flip(x, torch.full((5, 2), pad), torch.zeros(5, dtype=torch.bool), pad), x)


def test_flip_at_the_centre_reverses_the_width():
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(crop_flip(x, torch.full((5, 2), 4), torch.ones(5, dtype=torch.bool), 4), x.flip(-1))


@pytest.mark.parametrize("shape, pad", [((3, 32, 32), 4), ((1, 28, 28), 4), ((1, 28, 28), 1)])
def test_vectorised_crop_flip_equals_the_per_image_reference(shape, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, *shape), dtype=torch.uint8, generator=g)
    corner = torch.randint(0, 2 * pad + 1, (64, 2), generator=g)
    corner[:4] = torch.tensor([[0, 0], [0, 2 * pad], [2 * pad, 0], [2 * pad, 2 * pad]])  # the corners
    flip = torch.rand(64, generator=g) < 0.5
    out = crop_flip(x, corner, flip, pad)
    assert torch.equal(out, naive_crop_flip(x, corner, flip, pad))
    assert (out[0, :, :pad, :] == 0).all() and (out[0, :, :, :pad] == 0).all()  # zero padding shows at the corner


def transforms_used(out: torch.Tensor, src: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """For each output image, the (row corner, column corner, flip) of the per-image reference that gives it from its
    source image (random pixels: at most one does); AssertionError when none of the (2*pad+1)^2 * 2 does."""
    used = []
    for o, s in zip(out, src, strict=True):
        found = [
            (sh, sw, f)
            for sh in range(2 * pad + 1)
            for sw in range(2 * pad + 1)
            for f in (False, True)
            if torch.equal(naive_crop_flip(s[None], torch.tensor([[sh, sw]]), torch.tensor([f]), pad)[0], o)
        ]
        assert len(found) == 1, "an output image is no crop/flip of its source"
        used.append(found[0])
    return used


@pytest.mark.parametrize("crop_pad, flip", [(0, False), (2, False), (0, True), (2, True)])
def test_each_augmentation_switch_gives_exactly_its_transforms_against_the_per_image_reference(crop_pad, flip):
    # Labels are the images' indices, so each training image can be traced back to its source.
    x = torch.randint(1, 256, (256, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    it = TensorBatches(
        x, torch.arange(256), 64, torch.zeros(1), torch.ones(1), train=True, crop_pad=crop_pad, flip=flip
    )
    used = []
    for xb, yb in it:
        used += transforms_used(unnormalise(xb, torch.zeros(1), torch.ones(1)), x[yb], crop_pad)
    corners, flips = {(sh, sw) for sh, sw, _ in used}, {f for _, _, f in used}
    assert corners == {(sh, sw) for sh in range(2 * crop_pad + 1) for sw in range(2 * crop_pad + 1)}  # every window
    assert flips == ({False, True} if flip else {False})


@pytest.mark.parametrize("dataset, flip", [("cifar10", True), ("cifar10", False), ("fashion-mnist", True)])
def test_data_module_flips_training_batches_exactly_when_flip_is_on(tmp_path, cifar_checksums_off, dataset, flip):
    # Every image is a left-to-right ramp 7, 14, ..., 7W: a crop keeps it increasing; only a flip makes it decrease.
    shape = (3, 32, 32) if dataset == "cifar10" else (1, 28, 28)
    x = np.broadcast_to(np.arange(1, shape[2] + 1, dtype=np.uint8) * 7, (100, *shape)).copy()
    y = np.zeros(100)
    if dataset == "cifar10":
        write_cifar(tmp_path, x, y, x[:10], y[:10])
    else:
        write_mnist(tmp_path, "FashionMNIST", x, y, x[:10], y[:10])
    dm = loaded(tmp_path, dataset, val_size=0, batch_size=100, crop_pad=2, flip=flip)
    u8 = unnormalise(next(iter(dm.train_dataloader()))[0], dm)
    row = u8[:, 0, 3, 2:-2].long()  # inside the image whatever the crop
    decreasing = (row.diff(dim=1) < 0).all(dim=1)
    assert ((row.diff(dim=1) > 0).all(dim=1) | decreasing).all()
    assert decreasing.any() == flip


# ---- batches: (seed, epoch), drop-last, evaluation, DDP ------------------------------------------------------------


def batches(n=200, batch_size=32, **kw) -> TensorBatches:
    x = torch.from_numpy(ids_images(n))
    y = torch.arange(n)
    return TensorBatches(x, y, batch_size, torch.full((3,), 0.5), torch.full((3,), 0.25), **kw)


def run(it) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(iter(it))


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=False)
    )


def test_same_seed_and_epoch_give_the_same_batches_and_another_epoch_or_seed_does_not():
    kw = {"train": True, "crop_pad": 4, "flip": True}
    e1 = run(batches(seed=3, epoch=1, **kw))
    assert same(e1, run(batches(seed=3, epoch=1, **kw)))
    e2 = run(batches(seed=3, epoch=2, **kw))
    assert not torch.equal(torch.cat([y for _, y in e1]), torch.cat([y for _, y in e2]))  # another order
    assert not same(e1, run(batches(seed=4, epoch=1, **kw)))


def test_epoch_is_read_when_iteration_starts():
    epoch = [0]
    it = batches(train=True, crop_pad=4, flip=True, epoch=lambda: epoch[0])
    epoch[0] = 5
    assert same(run(it), run(batches(train=True, crop_pad=4, flip=True, epoch=5)))


def test_training_batches_drop_the_last_incomplete_batch_and_repeat_no_sample():
    it = batches(n=200, batch_size=32, train=True)
    out = run(it)
    assert len(it) == len(out) == 6 and all(len(y) == 32 for _, y in out)
    seen = torch.cat([y for _, y in out]).tolist()
    assert len(set(seen)) == 192


def test_evaluation_batches_keep_every_sample_in_order():
    it = batches(n=200, batch_size=64)
    out = run(it)
    assert len(it) == len(out) == 4 and [len(y) for _, y in out] == [64, 64, 64, 8]
    assert torch.equal(torch.cat([y for _, y in out]), torch.arange(200))
    assert torch.equal(
        unnormalise(torch.cat([x for x, _ in out]), torch.full((3,), 0.5), torch.full((3,), 0.25)),
        torch.from_numpy(ids_images(200)),
    )


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_ranks_together_see_the_single_process_batches_and_augmentation(world_size):
    kw = {"n": 300, "train": True, "crop_pad": 4, "flip": True, "seed": 7, "epoch": 2}
    single = run(batches(batch_size=64, **kw))
    ranks = [run(batches(batch_size=64 // world_size, rank=r, world_size=world_size, **kw)) for r in range(world_size)]
    assert all(len(r) == len(single) == 4 for r in ranks)
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([r[step][0] for r in ranks]), x)
        assert torch.equal(torch.cat([r[step][1] for r in ranks]), y)


def test_rank_outside_the_world_raises():
    with pytest.raises(ValueError, match="rank"):
        batches(train=True, rank=2, world_size=2)


# ---- Lightning -----------------------------------------------------------------------------------------------------


class Recorder(L.LightningModule):
    """A linear classifier that records the labels of every training batch per epoch."""

    def __init__(self, in_features: int):
        super().__init__()
        self.lin = nn.Linear(in_features, 10)
        self.seen: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch, i):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).append(y.clone())
        return F.cross_entropy(self.lin(x.flatten(1)), y)

    def validation_step(self, batch, i):
        self.log("val_loss", F.cross_entropy(self.lin(batch[0].flatten(1)), batch[1]))

    def test_step(self, batch, i):
        self.log("test_loss", F.cross_entropy(self.lin(batch[0].flatten(1)), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_fit_validate_and_test_run_on_the_batches_with_known_lengths_and_per_epoch_shuffles(fake_cifar10):
    dm = ImageDataModule(
        "cifar10", root=str(fake_cifar10), download=False, val_size=100, batch_size=64, eval_batch_size=64
    )
    model = Recorder(3 * 32 * 32)
    t = trainer(max_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.fit(model, dm)
        assert t.num_training_batches == 500 // 64 and t.num_val_batches == [math.ceil(100 / 64)]
        val_loss = t.validate(model, dm, verbose=False)[0]["val_loss"]
        test_loss = t.test(model, dm, verbose=False)[0]["test_loss"]
        assert t.num_test_batches == [math.ceil(200 / 64)]
    # Each split's logged loss is the mean over all of its images (every batch counted, by its size).
    for logged, x, y in ((val_loss, dm.x_val, dm.y_val), (test_loss, dm.x_test, dm.y_test)):
        x = (x.float() / 255 - dm.mean.view(1, 3, 1, 1)) / dm.std.view(1, 3, 1, 1)
        with torch.no_grad():
            assert logged == pytest.approx(F.cross_entropy(model.lin(x.flatten(1)), y).item(), rel=1e-5)
    # The batches of epoch e are those of set_epoch(e) without a trainer: a run resumed at e sees them again.
    for epoch in (0, 1):
        alone = ImageDataModule("cifar10", root=str(fake_cifar10), download=False, val_size=100, batch_size=64)
        alone.setup()
        alone.set_epoch(epoch)
        assert torch.equal(torch.cat(model.seen[epoch]), torch.cat([y for _, y in alone.train_dataloader()]))
    assert not torch.equal(torch.cat(model.seen[0]), torch.cat(model.seen[1]))


def test_fit_runs_without_validation_when_val_size_is_zero():
    dm = ImageDataModule("synthetic", val_size=0, batch_size=50, synthetic_train=200, synthetic_test=50)
    model = Recorder(3 * 32 * 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer(max_epochs=1).fit(model, dm)
    assert len(model.seen[0]) == 4


@CUDA
def test_setup_moves_the_data_to_the_trainers_cuda_device_and_batches_are_built_there():
    dm = ImageDataModule("synthetic", val_size=100, batch_size=50, synthetic_train=300, synthetic_test=100)
    t = L.Trainer(accelerator="cuda", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)
    t.fit(Recorder(3 * 32 * 32), dm)
    assert dm.x_train.is_cuda and dm.y_train.is_cuda and dm.x_test.is_cuda
    x, y = next(iter(dm.train_dataloader()))
    assert x.is_cuda and y.is_cuda
    cpu = ImageDataModule("synthetic", val_size=100, batch_size=50, synthetic_train=300, synthetic_test=100)
    cpu.setup()
    cpu.set_epoch(dm.current_epoch())  # after fit the trainer's epoch is 1: compare the batches of the same epoch
    xc, yc = next(iter(cpu.train_dataloader()))
    assert torch.equal(y.cpu(), yc) and torch.allclose(x.cpu(), xc)  # the same batch on either device


# ---- generated data ------------------------------------------------------------------------------------------------


def test_synthetic_data_is_cifar_shaped_seeded_sized_and_learnable():
    kw = {"val_size": 100, "synthetic_train": 1100, "synthetic_test": 300}
    a, b, c = (ImageDataModule("synthetic", seed=s, **kw) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup()
    assert a.x_train.shape == (1000, 3, 32, 32) and a.x_test.shape == (300, 3, 32, 32)
    assert a.x_train.dtype == torch.uint8 and (a.num_classes, a.input_shape) == (10, (3, 32, 32))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test) and not torch.equal(a.x_test, c.x_test)
    assert set(a.y_train.tolist()) == set(range(10))

    # Learnable: the minimum-norm least-squares linear classifier fitted on the training split (N < D, so in its dual
    # form w = X^T (X X^T)^-1 Y: one N x N solve) beats chance (10%) on the test split.
    def feats(x):
        return torch.cat([x.flatten(1).double() / 255, torch.ones(len(x), 1, dtype=torch.float64)], 1)

    x = feats(a.x_train)
    gram = x @ x.T + 1e-6 * torch.eye(len(x), dtype=torch.float64)  # the ridge only guards the solve
    w = x.T @ torch.linalg.solve(gram, F.one_hot(a.y_train, 10).double())
    assert (feats(a.x_test) @ w).argmax(1).eq(a.y_test).double().mean() > 0.3


# ---- missing data and bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, folder",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_missing_data_with_download_off_raises_one_line_naming_the_path(tmp_path, dataset, folder):
    dm = ImageDataModule(dataset, root=str(tmp_path), download=False)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(DataMissingError) as e:
            step()
        message = str(e.value)
        assert "\n" not in message and str(tmp_path / folder) in message and "download" in message
    assert issubclass(DataMissingError, RuntimeError)


def test_a_failed_download_raises_one_line_with_the_reason_and_never_waits_without_a_timeout(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        assert socket.getdefaulttimeout() == DOWNLOAD_TIMEOUT_S  # a silent network fails after this, not never
        raise URLError("no network here")

    monkeypatch.setattr(torchvision.datasets.utils.urllib.request, "urlopen", offline)
    for dataset in ("cifar10", "mnist"):
        with pytest.raises(DataMissingError, match=r"could not be downloaded \(.*no network here") as e:
            ImageDataModule(dataset, root=str(tmp_path), download=True).prepare_data()
        assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    assert socket.getdefaulttimeout() is None  # restored


def test_unknown_dataset_raises_naming_the_option_the_choices_and_the_value():
    with pytest.raises(ValueError, match=r"dataset: expected one of 'cifar10', .*'synthetic', got 'cifar11'"):
        ImageDataModule("cifar11")


@pytest.mark.parametrize(
    "option, value",
    [
        ("batch_size", 0),
        ("eval_batch_size", 0),
        ("val_size", -1),
        ("batch_size", 2.0),
        ("batch_size", True),
        ("seed", -1),
        ("synthetic_train", 0),
        ("synthetic_test", 0),
        ("crop_pad", -1),
        ("crop_pad", 1.5),
    ],
)
def test_bad_sizes_raise_value_error_naming_the_option_and_value(option, value):
    with pytest.raises(ValueError, match=rf"{option}: expected an integer >= \d+, got {value!r}"):
        ImageDataModule("synthetic", **{option: value})


@pytest.mark.parametrize("option", ["flip", "download"])
def test_non_bool_switches_raise_type_error(option):
    with pytest.raises(TypeError, match=rf"{option}: expected a bool, got 'yes'"):
        ImageDataModule("synthetic", **{option: "yes"})


def test_batch_larger_than_the_training_split_raises_naming_batch_size_in_setup_for_fit():
    dm = ImageDataModule("synthetic", val_size=100, batch_size=300, synthetic_train=300, synthetic_test=10)
    with pytest.raises(UsageError, match=r"batch_size: expected at most 200 .*got 300"):
        dm.setup("fit")  # before any training step or sanity check
    dm.setup("test")  # testing takes no training batch
    with pytest.raises(UsageError, match=r"batch_size: expected at most 200 .*got 300"):
        dm.train_dataloader()


def test_missing_data_error_names_where_to_get_the_files(tmp_path):
    with pytest.raises(DataMissingError, match=r"cifar-10-python\.tar\.gz and extract it into"):
        ImageDataModule("cifar10", root=str(tmp_path), download=False).setup()
    with pytest.raises(DataMissingError, match=r"train-images-idx3-ubyte\.gz.* into .*\(\.gz or unpacked\)"):
        ImageDataModule("mnist", root=str(tmp_path), download=False).setup()
    assert not Path(tmp_path, "manualnet-cache").exists()


def test_crop_pad_of_the_image_side_or_more_raises_naming_the_side():
    with pytest.raises(ValueError, match=r"crop_pad: expected less than the image side 28 of Fashion-MNIST, got 28"):
        ImageDataModule("fashion-mnist", crop_pad=28)
    ImageDataModule("fashion-mnist", crop_pad=27)  # the largest that keeps a pixel of the image in every window


def test_flip_for_mnist_digits_raises_saying_why():
    with pytest.raises(
        ValueError, match=r"flip: expected false for MNIST \(a mirrored 2, 3, .* is no digit\), got true"
    ):
        ImageDataModule("mnist", flip=True)
    ImageDataModule("mnist", crop_pad=2)  # a crop keeps a digit a digit
