"""The epoch benchmark: one epoch of generated CIFAR-sized images three ways, interleaved, compared by their medians.

The epochs: 50,000 images (dataset="synthetic"), batch 512, H=512, augmentation on, each --epoch-repeats times (3):
the Lightning fit as manualnet-train builds it, from the CLI's own defaults and callbacks (lightning_s: the
second epoch of a two-epoch fit, first training batch to last, so neither the sanity check, validation nor the
checkpoint write); a bare loop over the same pre-loaded uint8 tensors through the same batches
(lightning_ref.TensorBatches: shuffle, crop/flip, normalise) with the same net, optimiser and schedule (bare_s); and
torchvision PIL images through RandomCrop/RandomHorizontalFlip/ToTensor/Normalize in a DataLoader at its best here
(dataloader_s: the fastest of 0, 1, 2 workers, persistent or not, pinned memory on CUDA, each timed once first, in
dataloader_configs_s; timed on the loader's second pass).
"""

import contextlib
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time

import lightning as L
import torch

from lightning_ref.bench.timing import spread, sync

EPOCH_IMAGES, EPOCH_BATCH, EPOCH_HIDDEN, VAL_IMAGES = 50_000, 512, 512, 5_000


def epoch_data(images: int, device: torch.device):
    """The synthetic CIFAR-sized data module, set up: `images` training images plus VAL_IMAGES held out."""
    from lightning_ref import ImageDataModule

    dm = ImageDataModule(
        dataset="synthetic",
        batch_size=EPOCH_BATCH,
        val_size=VAL_IMAGES,
        crop_pad=4,
        flip=True,
        synthetic_train=images + VAL_IMAGES,
        synthetic_test=1024,
    )
    dm.setup("fit")
    return dm


class EpochTimer(L.Callback):
    """Each epoch's training part (start of the epoch to the end of its last batch, device synchronised), and the
    validation accuracy after it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.train_s: list[float] = []
        self.val_acc: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            sync(self.device)
            self.train_s.append(time.perf_counter() - self.t0)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and "val_acc" in trainer.callback_metrics:
            self.val_acc.append(float(trainer.callback_metrics["val_acc"]))


def lightning_fit(dm, device: torch.device, hidden: int, epochs: int, compile: bool = False) -> dict:
    """A Lightning fit of `epochs` epochs built as manualnet-train builds one (lightning_ref.defaults: its seed,
    Trainer defaults, ModelCheckpoint, GradientCrossCheck and the callbacks every run gets; its CSVLogger, here in a
    temporary folder), on the set-up data module `dm`, each epoch's training part timed. Not the end-of-fit test and
    pictures. The Trainer API only: no jsonargparse needed."""
    from lightning.pytorch.loggers import CSVLogger

    from lightning_ref import GradientCrossCheck, ModelCheckpoint, RunRecorder, TwoLayerClassifier
    from lightning_ref.defaults import CHECKPOINT_DEFAULTS, RUN_NAME, SEED, TRAINER_DEFAULTS, run_callbacks

    L.seed_everything(SEED, verbose=False)
    model = TwoLayerClassifier(impl="manual", hidden=hidden, compile=compile)  # shape and classes: from dm
    timer = EpochTimer(device)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [ModelCheckpoint(**CHECKPOINT_DEFAULTS), GradientCrossCheck(), *run_callbacks(RunRecorder(), True)]
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=device.type,
            devices=TRAINER_DEFAULTS["devices"],
            default_root_dir=tmp,
            logger=CSVLogger(tmp, name=RUN_NAME),
            callbacks=[*callbacks, timer],
        )
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the progress bar: stdout is for the results
            trainer.fit(model, datamodule=dm)
        fit_s = time.perf_counter() - t0
    steps = trainer.num_training_batches
    return {
        "epoch_train_s": timer.train_s,
        "samples_per_s": [steps * dm.batch_size / t for t in timer.train_s],
        "val_acc": timer.val_acc,
        "fit_s": fit_s,
        "steps_per_epoch": steps,
        "images": len(dm.x_train),
        "batch_size": dm.batch_size,
        "hidden": hidden,
        "compile": compile,
    }


def optimizer_and_schedule(module, steps: int):
    """The optimizer and per-step schedule TwoLayerClassifier gives a fit of `steps` optimizer steps."""
    conf = module.optimizer_and_schedule(steps)
    return conf["optimizer"], conf["lr_scheduler"]["scheduler"]


def bare_epoch(dm, device: torch.device, hidden: int, max_steps: int | None = None) -> dict:
    """The same epoch without Lightning: TensorBatches over the pre-loaded tensors, the module's optimiser
    (max_steps: stop early; a few steps warm the process up, so that no timed epoch pays its first steps)."""
    from lightning_ref import TensorBatches, TwoLayerClassifier

    x_train, y_train = dm.x_train.to(device), dm.y_train.to(device)
    batches = TensorBatches(
        x_train, y_train, EPOCH_BATCH, dm.mean, dm.std, train=True, crop_pad=4, flip=True, seed=dm.seed, epoch=0
    )
    module = TwoLayerClassifier(dm.input_shape, dm.num_classes, impl="manual", hidden=hidden).to(device)
    net = module.net
    opt, sched = optimizer_and_schedule(module, len(batches))
    sync(device)
    t0 = time.perf_counter()
    for x, y in itertools.islice(batches, max_steps):
        loss = net.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync(device)
    return {"bare_s": time.perf_counter() - t0, "steps": len(batches)}


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from (H,W,C) uint8, then the transform."""

    def __init__(self, x_u8: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.data = x_u8.permute(0, 2, 3, 1).contiguous().numpy()  # (N,H,W,C), CIFAR10.data's layout
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def dataloader_configs(device: torch.device) -> dict[str, dict]:
    """The DataLoader settings tried: 0, 1, 2 worker processes (and one per core, up to 8, where there are more
    cores), persistent workers or not, pinned memory on CUDA (always: it is what a GPU loader is given)."""
    workers = sorted({0, 1, 2, min(8, os.cpu_count() or 1)})
    configs = {}
    for w in workers:
        for persistent in (False, True) if w > 0 else (False,):
            name = (
                f"workers={w}" + (", persistent" if persistent else "") + (", pinned" if device.type == "cuda" else "")
            )
            configs[name] = {"num_workers": w, "persistent_workers": persistent, "pin_memory": device.type == "cuda"}
    return configs


def dataloader_epoch(dm, device: torch.device, hidden: int, config: dict, max_batches: int | None) -> dict:
    """The usual pipeline: PIL images through torchvision transforms in a DataLoader (`config`: num_workers,
    persistent_workers, pin_memory), training the same net with the same optimiser.

    Timed: the loader's second pass, as a fit's second epoch (the first pass, two batches, starts the workers:
    persistent ones are then reused, others start again, as they would every epoch). With max_batches, only that many
    batches are trained and the epoch is extrapolated: the time to the first batch (worker start-up included) plus
    the mean time of the later ones times the remaining batches.
    """
    from torchvision import transforms as T

    from lightning_ref import TwoLayerClassifier

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(dm.mean.tolist(), dm.std.tolist()),
        ]
    )
    loader = torch.utils.data.DataLoader(
        PILImages(dm.x_train.cpu(), dm.y_train.cpu(), transform),
        batch_size=EPOCH_BATCH,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
        **config,
    )
    module = TwoLayerClassifier(dm.input_shape, dm.num_classes, impl="manual", hidden=hidden).to(device)
    net = module.net
    opt, sched = optimizer_and_schedule(module, len(loader))
    for _ in itertools.islice(loader, 2):  # the first pass: starts the workers
        pass
    total = len(loader)
    timed = total if max_batches is None else max(2, min(max_batches, total))
    t0 = time.perf_counter()
    t_first = None
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = net.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if i == 0:
            sync(device)
            t_first = time.perf_counter() - t0
        if i + 1 == timed:
            break
    sync(device)
    elapsed = time.perf_counter() - t0
    estimate = elapsed if timed == total else t_first + (elapsed - t_first) * (total - 1) / (timed - 1)
    # The workers shut down here, not whenever the garbage collector next finds the loader's reference cycle: run from
    # inside a later Lightning fit, the shutdown waits out DataLoader's join timeout for every persistent worker.
    del loader
    gc.collect()
    return {"dataloader_s": estimate, "batches_timed": timed, "batches": total}


def bench_epoch(images: int, device: torch.device, hidden: int, dataloader_batches: int | None, repeats: int) -> dict:
    """The three epochs, each `repeats` times interleaved (the order rotated each round), and their ratios of medians.
    The DataLoader runs with the fastest of dataloader_configs, found by timing each once first."""
    dm = epoch_data(images, device)
    bare_epoch(dm, device, hidden, max_steps=3)  # warm-up
    configs = dataloader_configs(device)
    tried = {name: dataloader_epoch(dm, device, hidden, cfg, dataloader_batches) for name, cfg in configs.items()}
    best = min(tried, key=lambda name: tried[name]["dataloader_s"])
    first_epochs = []

    def lightning() -> float:
        # Two epochs, the second timed: an epoch in the steady state of a fit, free of any one-time cost of the first
        # (each holds one gradient cross-check, at steps 0 and 100).
        fit = lightning_fit(dm, device, hidden, epochs=2)
        first_epochs.append(fit["epoch_train_s"][0])
        return fit["epoch_train_s"][1]

    runs = {
        "lightning": lightning,
        "bare": lambda: bare_epoch(dm, device, hidden)["bare_s"],
        "dataloader": lambda: dataloader_epoch(dm, device, hidden, configs[best], dataloader_batches)["dataloader_s"],
    }
    samples = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(runs[name]())
            print(f"# epoch {name}: {samples[name][-1]:.2f} s", file=sys.stderr, flush=True)
    med = {name: statistics.median(v) for name, v in samples.items()}
    return {
        "lightning_s": med["lightning"],
        "bare_s": med["bare"],
        "dataloader_s": med["dataloader"],
        "lightning_over_bare": med["lightning"] / med["bare"],
        "lightning_over_dataloader": med["lightning"] / med["dataloader"],
        "repeats": repeats,
        "runs_s": samples,  # every timed epoch, in the order taken within each kind
        "spread_s": {name: spread(v) for name, v in samples.items()},
        "images": images,
        "batch_size": EPOCH_BATCH,
        "hidden": hidden,
        "steps": len(dm.x_train) // EPOCH_BATCH,
        "dataloader_config": best,
        "dataloader_configs_s": {name: t["dataloader_s"] for name, t in tried.items()},
        "dataloader_batches_timed": tried[best]["batches_timed"],
        "dataloader_extrapolated": tried[best]["batches_timed"] < tried[best]["batches"],
        "lightning_first_epoch_s": statistics.median(first_epochs),
        "samples_per_s_lightning": len(dm.x_train) // EPOCH_BATCH * EPOCH_BATCH / med["lightning"],
    }
