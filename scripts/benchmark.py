"""Benchmarks: the manual backward against autograd, torch.compile and the GEMM floor; the data path against the usual
DataLoader. Results as a markdown table on stdout, JSON with --json, a plot with --plot (docs/performance.md).

    python scripts/benchmark.py --json runs/bench/benchmark.json --plot runs/bench/step_time.png
    python scripts/benchmark.py --quick   # the goal shapes (H=512, H=2048, N=D=H=64), the epochs; fewer repetitions

Step time of one training step on x (N,D) float32, labels y (N,), C classes, for four variants:
    manual             TwoLayerNet.loss (the hand-written Functions), eager
    autograd           nn.Sequential(Flatten, Linear, ReLU, Linear) + F.cross_entropy, eager
    autograd_compiled  the same under torch.compile
    manual_compiled    TwoLayerNet.loss under torch.compile
each timed as forward + backward (<variant>_ms) and as forward + backward + SGD step (<variant>_sgd_ms); and the
compiled training step (manual_compiled_step_ms: forward, backward and SGD step in one compiled function, CUDA graphs
on a GPU, as TwoLayerClassifier(compile=True) runs it; compiled_step_over_eager against manual_sgd_ms).
The GEMM floor (floor_ms): the step's two large products, s1 = x w1 (N,D)@(D,H) and dW1 = x^T dS1 (D,N)@(N,H),
2*N*D*H multiply-adds each (every other part of the step is O(N*H + H*C + N*C)), each timed in every layout either
implementation uses and transposed (floor_layouts_ms); the floor is the sum of each product's fastest layout, so no
implementation of the step beats it by more than noise. All callables are timed interleaved (round robin, the order
rotated every repetition) after warm-up, a fast one over several back-to-back calls per sample; the median is
reported with the quartiles and the range. CPU times are perf_counter around the calls; CUDA times are CUDA events
around them, with TF32 off and on.

Saved-for-backward bytes are counted with torch.autograd.graph.saved_tensors_hooks during the forward: every tensor
autograd (or our Functions' save_for_backward) packs is seen by the hook. saved_bytes_<impl> counts each distinct
storage once, at its full size (a saved view keeps its whole storage alive; autograd saves ReLU's output x2 twice,
as ReLU's result and as the second Linear's input, one storage); saved_bytes_<impl>_per_pack sums numel * itemsize
over every pack; saved_bytes_<impl>_activations leaves out the storages of x, y and the parameters, which exist
anyway: what remains is the memory held only for backward; activations_per_example_<impl> is that divided by N.

The epoch comparison trains one epoch of 50,000 CIFAR-sized uint8 images (generated: dataset="synthetic"), batch 512,
H=512, augmentation on, three ways, each --epoch-repeats times (3), interleaved; the medians and their ratios are
reported, every run in runs_s: the project's Lightning fit with the callbacks and logger the CLI uses (lightning_s:
the second epoch of a two-epoch fit, first training batch to last, so neither the sanity check, validation nor the
checkpoint write); a bare loop over the same pre-loaded uint8 tensors through the same batches
(lightning_ref.data.TensorBatches: shuffle, crop/flip, normalise) with the same net, optimiser and schedule (bare_s);
and torchvision PIL images through RandomCrop/RandomHorizontalFlip/ToTensor/Normalize in a DataLoader at its best
here (dataloader_s: the fastest of 0, 1, 2 workers, persistent or not, pinned memory on CUDA, each timed once first,
in dataloader_configs_s; timed on the loader's second pass).
"""

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout that is not pip-installed (the device check)

from lightning_ref.reference import reference_from  # noqa: E402
from manualnet import TwoLayerNet  # noqa: E402

VARIANTS = ("manual", "autograd", "autograd_compiled", "manual_compiled")
SHAPES = [(512, 3072, 100, 10), (512, 3072, 512, 10), (512, 3072, 2048, 10), (64, 64, 64, 10)]
QUICK_SHAPES = [(512, 3072, 512, 10), (512, 3072, 2048, 10), (64, 64, 64, 10)]  # every shape with a goal
EPOCH_IMAGES, EPOCH_BATCH, EPOCH_HIDDEN, VAL_IMAGES = 50_000, 512, 512, 5_000
SGD_LR = 1e-3  # the step-time SGD: small, so that thousands of steps leave the weights sane
SAMPLE_MS = 5.0  # a timing sample spans at least this long (several calls of a fast step)


# ---- timing ---------------------------------------------------------------------------------------------------------


def time_ms(fn, device: torch.device, calls: int = 1) -> float:
    """Milliseconds per call of `calls` back-to-back calls of fn: CUDA events on a GPU (the device's own clock),
    perf_counter on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e3 / calls


def interleaved(fns: dict, device: torch.device, reps: int, warmup: int) -> dict[str, list[float]]:
    """reps timings of every callable, taken round robin (order rotated each round) after `warmup` calls of each.
    A callable faster than SAMPLE_MS is timed over as many back-to-back calls as fill SAMPLE_MS (timer resolution
    and the timing's own overhead are then negligible); each sample is the time per call."""
    calls = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        once = min(time_ms(fn, device), time_ms(fn, device))  # the faster of two: a late recompile is not the step
        calls[name] = max(1, math.ceil(SAMPLE_MS / max(once, 1e-3)))
    names, samples = list(fns), {name: [] for name in fns}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(time_ms(fns[name], device, calls[name]))
    return samples


def spread(samples: list[float]) -> dict[str, float]:
    """Median, quartiles and range of timings (ms)."""
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else samples * 3
    return {"median": median, "q1": q1, "q3": q3, "min": min(samples), "max": max(samples)}


# ---- step time ------------------------------------------------------------------------------------------------------


def saved_bytes(loss_fn, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor]) -> dict[str, int]:
    """Bytes autograd keeps for backward from one forward of loss_fn(x, y), seen by saved_tensors_hooks.

    unique: each distinct storage once, at its full size; per_pack: numel * itemsize summed over every pack;
    activations: unique, without the storages of x, y and params (which are held anyway).
    """
    packed = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(x, y)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in packed}
    held = {t.untyped_storage().data_ptr() for t in [x, y, *params]}
    return {
        "unique": sum(storages.values()),
        "per_pack": sum(t.numel() * t.element_size() for t in packed),
        "activations": sum(n for ptr, n in storages.items() if ptr not in held),
    }


def make_step(loss_fn, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, opt=None):
    """One training step: gradients reset to None (as optimizer.zero_grad does), forward, backward, optional SGD."""

    def step() -> None:
        for p in params:
            p.grad = None
        loss_fn(x, y).backward()
        if opt is not None:
            opt.step()

    return step


def make_compiled_step(model: TwoLayerNet, x: torch.Tensor, y: torch.Tensor, device: torch.device):
    """TwoLayerClassifier(compile=True)'s step: forward, the hand-written backward and the SGD step as one
    torch.compile'd function (CUDA graphs on a GPU); gradients reset to None before it, eagerly."""
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=SGD_LR, momentum=0.9)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        model.loss(x, y).backward()
        opt.step()

    compiled = torch.compile(train_step, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)

    def step() -> None:
        for p in params:
            p.grad = None
        torch.compiler.cudagraph_mark_step_begin()
        compiled(x, y)

    return step


def floor_products(x: torch.Tensor, w1: torch.Tensor, ds1: torch.Tensor) -> dict:
    """The step's two large products in every layout either implementation uses, and the other orientation of each:
    s1 = x w1 (N,D)@(D,H) and dW1 = x^T dS1 (D,N)@(N,H), each with the weight as (D,H) (manual) or (H,D) (nn.Linear's
    weight, autograd's dW1 = dS1^T x), and with the product computed transposed."""
    w1_hd = w1.T.contiguous()  # nn.Linear's (H,D) weight
    return {
        "s1: x @ w1": lambda: x @ w1,  # manual (addmm)
        "s1: x @ W1^T": lambda: x @ w1_hd.T,  # nn.Linear (addmm with the transposed (H,D) weight)
        "s1^T: W1 @ x^T": lambda: w1_hd @ x.T,
        "dW1: x^T @ dS1": lambda: x.T @ ds1,  # manual
        "dW1^T: dS1^T @ x": lambda: ds1.T @ x,  # autograd (nn.Linear's weight gradient)
    }


def bench_shape(shape: tuple[int, int, int, int], device: torch.device, reps: int, warmup: int, tf32s: tuple) -> list:
    """Step times of the four variants (with and without SGD), the compiled training step, the GEMM floor and saved
    bytes for one shape: one row per TF32 setting in tf32s (None on a CPU), the same compiled functions timed under
    each (cuBLAS reads the setting at every call).

    floor_ms: for each of the two large products, the fastest of its layouts (floor_products), summed. No
    implementation of the step can beat it by more than noise: it does both products and more."""
    n, d, h, c = shape
    torch._dynamo.reset()  # each shape compiles afresh, static shapes (no recompile limits across shapes)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen).to(device)
    y = torch.randint(0, c, (n,), generator=gen).to(device)
    ds1 = torch.randn(n, h, generator=gen).to(device)
    manual = TwoLayerNet(d, h, c, seed=0, device=device)
    manual_c = TwoLayerNet(d, h, c, seed=0, device=device)
    manual_cs = TwoLayerNet(d, h, c, seed=0, device=device)
    ref, ref_c = reference_from(manual), reference_from(manual)
    models = {"manual": manual, "autograd": ref, "autograd_compiled": ref_c, "manual_compiled": manual_c}
    loss_fns = {
        "manual": manual.loss,
        "autograd": lambda x, y: F.cross_entropy(ref(x), y),
        "autograd_compiled": torch.compile(lambda x, y: F.cross_entropy(ref_c(x), y), dynamic=False),
        "manual_compiled": torch.compile(manual_c.loss, dynamic=False),
    }
    products = floor_products(x, manual.w1.detach(), ds1)
    fns = dict(products)
    for v in VARIANTS:
        params = list(models[v].parameters())
        fns[v] = make_step(loss_fns[v], params, x, y)
        fns[f"{v}_sgd"] = make_step(loss_fns[v], params, x, y, torch.optim.SGD(params, lr=SGD_LR, momentum=0.9))
    fns["manual_compiled_step"] = make_compiled_step(manual_cs, x, y, device)
    counted = {
        "manual": saved_bytes(loss_fns["manual"], x, y, list(manual.parameters())),
        "autograd": saved_bytes(loss_fns["autograd"], x, y, list(ref.parameters())),
    }
    rows = []
    for tf32 in tf32s:
        if tf32 is not None:
            set_tf32(tf32)
        stats = {name: spread(s) for name, s in interleaved(fns, device, reps, warmup).items()}
        row = step_row(shape, stats, list(products), counted)
        row["tf32"] = tf32
        if device.type == "cuda":
            row["peak_bytes"] = {v: peak_bytes(fns[v], list(models[v].parameters()), device) for v in VARIANTS}
        rows.append(row)
    return rows


def step_row(shape: tuple[int, int, int, int], stats: dict, products: list[str], counted: dict) -> dict:
    """One shape's results: medians, the floor, ratios, saved bytes (counted: saved_bytes per impl), spreads."""
    n, d, h, c = shape
    row = {"shape": {"N": n, "D": d, "H": h, "C": c}}
    for name in VARIANTS:
        row[f"{name}_ms"] = stats[name]["median"]
    row["floor_layouts_ms"] = {name: stats[name]["median"] for name in products}
    fastest = {
        product: min(ms for name, ms in row["floor_layouts_ms"].items() if name.startswith(product))
        for product in ("s1", "dW1")
    }
    row["floor_ms"] = fastest["s1"] + fastest["dW1"]
    row["manual_over_autograd"] = row["manual_ms"] / row["autograd_ms"]
    row["manual_over_floor"] = row["manual_ms"] / row["floor_ms"]
    for impl, saved in counted.items():
        row[f"saved_bytes_{impl}"] = saved["unique"]
        row[f"saved_bytes_{impl}_per_pack"] = saved["per_pack"]
        row[f"saved_bytes_{impl}_activations"] = saved["activations"]
        row[f"activations_per_example_{impl}"] = saved["activations"] / n  # bytes kept for backward per row of x
    for v in VARIANTS:
        row[f"{v}_sgd_ms"] = stats[f"{v}_sgd"]["median"]
    row["manual_compiled_step_ms"] = stats["manual_compiled_step"]["median"]
    row["compiled_step_over_eager"] = row["manual_compiled_step_ms"] / row["manual_sgd_ms"]
    row["spread_ms"] = stats  # per callable: median, q1, q3, min, max
    row["gemm_gflop"] = 2 * 2 * n * d * h / 1e9  # the two large products of one step
    return row


def peak_bytes(step, params: list[torch.Tensor], device: torch.device) -> int:
    """CUDA memory one step allocates above what is live before it (parameters, batch; gradients reset to None)."""
    for p in params:
        p.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def set_tf32(on: bool) -> None:
    """TF32 for float32 matmuls on CUDA on or off (the newer fp32_precision switch where torch has it)."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on


# ---- the epoch comparison -------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_data(images: int, device: torch.device):
    """The synthetic CIFAR-sized data module, set up: `images` training images plus VAL_IMAGES held out."""
    from lightning_ref.data import ImageDataModule

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


def optimiser_like_module(module, steps: int):
    """The optimiser and per-step schedule TwoLayerClassifier.configure_optimizers builds, without a Trainer."""

    class _Trainer:
        estimated_stepping_batches = steps

    module.trainer = _Trainer()  # configure_optimizers reads only trainer.estimated_stepping_batches
    try:
        conf = module.configure_optimizers()
    finally:
        module.trainer = None
    return conf["optimizer"], conf["lr_scheduler"]["scheduler"]


def lightning_fit(dm, device: torch.device, hidden: int, epochs: int, compile: bool = False) -> dict:
    """A Lightning fit of `epochs` epochs with the CLI's callbacks and logger (into a temporary folder), each epoch's
    training part (start of the epoch to the end of its last batch, device synchronised) timed by a callback."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightning_ref.callbacks import GradientCrossCheck, RunRecorder
    from lightning_ref.module import TwoLayerClassifier

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.train_s: list[float] = []
            self.val_acc: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            _sync(device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if batch_idx == trainer.num_training_batches - 1:
                _sync(device)
                self.train_s.append(time.perf_counter() - self.t0)

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking and "val_acc" in trainer.callback_metrics:
                self.val_acc.append(float(trainer.callback_metrics["val_acc"]))

    L.seed_everything(0, verbose=False)
    model = TwoLayerClassifier(dm.input_shape, dm.num_classes, impl="manual", hidden=hidden, compile=compile)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        # What lightning_ref.cli adds to the Trainer's defaults: a CSVLogger, ModelCheckpoint on val_acc (best + last),
        # GradientCrossCheck with its defaults and the RunRecorder. Not the end-of-fit test and pictures.
        checkpoint = ModelCheckpoint(
            monitor="val_acc",
            mode="max",
            save_last=True,
            filename="best-epoch{epoch:03d}-val_acc{val_acc:.4f}",
            auto_insert_metric_name=False,
        )
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cuda" if device.type == "cuda" else "cpu",
            devices=1,
            logger=CSVLogger(tmp, name="bench"),
            callbacks=[checkpoint, GradientCrossCheck(), RunRecorder(), timer],
            default_root_dir=tmp,
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


def bare_epoch(dm, device: torch.device, hidden: int, max_steps: int | None = None) -> dict:
    """The same epoch without Lightning: TensorBatches over the pre-loaded tensors, the module's optimiser
    (max_steps: stop early; a few steps warm the process up, so that no timed epoch pays its first steps)."""
    from lightning_ref.data import TensorBatches
    from lightning_ref.module import TwoLayerClassifier

    x_train, y_train = dm.x_train.to(device), dm.y_train.to(device)
    batches = TensorBatches(
        x_train, y_train, EPOCH_BATCH, dm.mean, dm.std, train=True, crop_pad=4, flip=True, seed=dm.seed, epoch=0
    )
    module = TwoLayerClassifier(dm.input_shape, dm.num_classes, impl="manual", hidden=hidden).to(device)
    net = module.net
    opt, sched = optimiser_like_module(module, len(batches))
    _sync(device)
    t0 = time.perf_counter()
    for x, y in itertools.islice(batches, max_steps):
        loss = net.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    _sync(device)
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

    from lightning_ref.module import TwoLayerClassifier

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
    opt, sched = optimiser_like_module(module, len(loader))
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
            _sync(device)
            t_first = time.perf_counter() - t0
        if i + 1 == timed:
            break
    _sync(device)
    elapsed = time.perf_counter() - t0
    estimate = elapsed if timed == total else t_first + (elapsed - t_first) * (total - 1) / (timed - 1)
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


# ---- report ---------------------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    """What the numbers were measured on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
    }


def goals(results: dict) -> list[dict]:
    """The targets of issue 10 that these results can be judged against, each with its measured value and verdict.

    CPU: manual/autograd <= 1.00 and manual/floor <= 1.10 at H=512 and H=2048 (N=512, D=3072); manual/autograd
    <= 1.3 at N=D=H=64; activations kept for backward per example, manual <= autograd, at every shape;
    Lightning/bare <= 1.10 and Lightning/DataLoader (its best settings) <= 0.35, ratios of medians. CUDA: manual <=
    autograd at every shape, both TF32 settings; the step at H=2048 with TF32 reaching >= 70% of the GEMM floor's
    speed (floor/manual >= 0.70); a training epoch at H=512 in well under a second (taken as <= 0.5 s).
    """
    out = []

    def goal(name: str, value: float, met: bool) -> None:
        out.append({"goal": name, "measured": value, "met": bool(met)})

    cuda = results["device"] == "cuda"
    for row in results["steps"]:
        s = row["shape"]
        where = f"N={s['N']} D={s['D']} H={s['H']} C={s['C']}" + ("" if row["tf32"] is None else f" TF32 {row['tf32']}")
        big = (s["N"], s["D"], s["C"]) == (512, 3072, 10) and s["H"] in (512, 2048)
        small = (s["N"], s["D"], s["H"]) == (64, 64, 64)
        ratio = row["manual_over_autograd"]
        if cuda or big:
            goal(f"manual/autograd <= 1.00 at {where}", ratio, ratio <= 1.0)
        if small and not cuda:
            goal(f"manual/autograd <= 1.3 at {where}", ratio, ratio <= 1.3)
        if big and not cuda:
            goal(f"manual/floor <= 1.10 at {where}", row["manual_over_floor"], row["manual_over_floor"] <= 1.10)
        if big and cuda and s["H"] == 2048 and row["tf32"]:
            ratio = row["floor_ms"] / row["manual_ms"]
            goal(f"floor/manual >= 0.70 (of the TF32 GEMM floor) at {where}", ratio, ratio >= 0.70)
        per_example = row["activations_per_example_manual"], row["activations_per_example_autograd"]
        goal(
            f"activations per example manual <= autograd at {where} (bytes: {per_example[0]:g} / {per_example[1]:g})",
            per_example[0] / per_example[1],
            per_example[0] <= per_example[1],
        )
    ep = results.get("epoch")
    if ep and not cuda:
        goal("Lightning/bare <= 1.10 (medians)", ep["lightning_over_bare"], ep["lightning_over_bare"] <= 1.10)
        goal(
            f"Lightning/DataLoader <= 0.35 (medians; DataLoader at its best: {ep['dataloader_config']})",
            ep["lightning_over_dataloader"],
            ep["lightning_over_dataloader"] <= 0.35,
        )
    if cuda:
        epochs = ([ep["lightning_s"]] if ep and ep["hidden"] == 512 else []) + (
            results["fit"]["epoch_train_s"] if results.get("fit") and results["fit"]["hidden"] == 512 else []
        )
        if epochs:
            best = statistics.median(epochs)
            goal("training epoch at H=512 well under a second (<= 0.5 s, median)", best, best <= 0.5)
    return out


def _tf32(row: dict) -> str:
    return {None: "-", True: "on", False: "off"}[row["tf32"]]


def _ms(stats: dict) -> str:
    return f"{stats['median']:.3f} [{stats['q1']:.3f}, {stats['q3']:.3f}]"


def markdown(results: dict) -> str:
    """The results as markdown tables: step times (median [q1, q3]), ratios, saved bytes; the epoch comparison."""
    env = results["env"]
    lines = [f"device: {results['device']} ({env['device_name']}), {env['threads']} threads, torch {env['torch']}"]
    rows = results["steps"]
    if rows:
        lines += [
            "",
            "step time, forward + backward: median [q1, q3] ms",
            "",
            "| N,D,H,C | TF32 | manual | autograd | autograd compiled | manual compiled | floor "
            "| manual/autograd | manual/floor | activations per example manual / autograd (bytes) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    for row in rows:
        s, sp = row["shape"], row["spread_ms"]
        times = " | ".join(_ms(sp[name]) for name in VARIANTS)
        lines.append(
            f"| {s['N']},{s['D']},{s['H']},{s['C']} | {_tf32(row)} | {times} | {row['floor_ms']:.3f} "
            f"| {row['manual_over_autograd']:.3f} | {row['manual_over_floor']:.3f} "
            f"| {row['activations_per_example_manual']:g} / {row['activations_per_example_autograd']:g} |"
        )
    if rows:
        lines += [
            "",
            "with the SGD step: median ms; the compiled training step (forward, backward, SGD step in one compiled"
            " function) against the eager manual one",
            "",
            "| N,D,H,C | TF32 | " + " | ".join(VARIANTS) + " | manual compiled step | compiled/eager |",
        ]
        lines.append("| --- | --- |" + " ---: |" * (len(VARIANTS) + 2))
    for row in rows:
        s = row["shape"]
        times = " | ".join(f"{row[f'{v}_sgd_ms']:.3f}" for v in VARIANTS)
        lines.append(
            f"| {s['N']},{s['D']},{s['H']},{s['C']} | {_tf32(row)} | {times} | {row['manual_compiled_step_ms']:.3f} "
            f"| {row['compiled_step_over_eager']:.3f} |"
        )
    if rows:
        lines += [
            "",
            "the GEMM floor: each large product in each layout, median ms (the floor sums each product's best)",
        ]
        names = list(rows[0]["floor_layouts_ms"])
        lines += ["", "| N,D,H,C | TF32 | " + " | ".join(f"`{n}`" for n in names) + " |"]
        lines.append("| --- | --- |" + " ---: |" * len(names))
    for row in rows:
        s = row["shape"]
        times = " | ".join(f"{row['floor_layouts_ms'][n]:.3f}" for n in names)
        lines.append(f"| {s['N']},{s['D']},{s['H']},{s['C']} | {_tf32(row)} | {times} |")
    fit = results.get("fit")
    if fit:
        lines += [
            "",
            f"Lightning fit{' (compiled step)' if fit['compile'] else ''}: {fit['images']:,} images, "
            f"batch {fit['batch_size']}, H={fit['hidden']} "
            f"(training part of each epoch; the whole fit {fit['fit_s']:.1f} s)",
            "",
            "| epoch | train s | samples/s | val acc |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for i, (t, sps) in enumerate(zip(fit["epoch_train_s"], fit["samples_per_s"], strict=True)):
            acc = fit["val_acc"][i] if i < len(fit["val_acc"]) else float("nan")
            lines.append(f"| {i} | {t:.3f} | {sps:,.0f} | {acc:.4f} |")
    ep = results.get("epoch")
    if ep:
        note = (
            f" (extrapolated from {ep['dataloader_batches_timed']} of {ep['steps']} batches)"
            if ep["dataloader_extrapolated"]
            else ""
        )
        sp = ep["spread_s"]

        def span(name: str) -> str:
            return f"{sp[name]['median']:.2f} [{sp[name]['min']:.2f}, {sp[name]['max']:.2f}]"

        lines += [
            "",
            f"one epoch: {ep['images']:,} images, batch {ep['batch_size']}, H={ep['hidden']}, augmentation on; "
            f"median [min, max] of {ep['repeats']} interleaved runs each; the DataLoader at its best here: "
            f"{ep['dataloader_config']}",
            "",
            "| Lightning s | bare loop s | DataLoader s | Lightning/bare | Lightning/DataLoader |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {span('lightning')} | {span('bare')} | {span('dataloader')}{note} "
            f"| {ep['lightning_over_bare']:.3f} | {ep['lightning_over_dataloader']:.3f} |",
            "",
            "DataLoader settings tried (one epoch each, s): "
            + ", ".join(f"{name} {t:.2f}" for name, t in ep["dataloader_configs_s"].items()),
        ]
    if results.get("goals"):
        lines += ["", "| goal | measured | met |", "| --- | ---: | :---: |"]
        lines += [f"| {g['goal']} | {g['measured']:.4f} | {'yes' if g['met'] else 'NO'} |" for g in results["goals"]]
    return "\n".join(lines)


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """'N,D,H,C;N,D,H,C' -> [(N, D, H, C), ...]."""
    shapes = []
    for part in text.split(";"):
        dims = part.split(",")
        if len(dims) != 4 or not all(d.strip().isdigit() and int(d) > 0 for d in dims):
            raise argparse.ArgumentTypeError(f"expected 'N,D,H,C' of positive integers, got {part!r}")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="the goal shapes (H=512, 2048; N=D=H=64), fewer repetitions, DataLoader subsampled",
    )
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    p.add_argument("--plot", type=Path, help="write a PNG of step time against H (N=512 shapes) to this file")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: as many as torch takes, the cores)")
    p.add_argument("--reps", type=int, help="timed repetitions per callable (default 21, quick 7)")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch comparison")
    p.add_argument("--epoch-images", type=int, default=EPOCH_IMAGES, help="training images per epoch (50000)")
    p.add_argument("--epoch-hidden", type=int, default=EPOCH_HIDDEN, help="hidden units H of the epochs (512)")
    p.add_argument("--epoch-repeats", type=int, default=3, help="timed runs of each epoch kind, interleaved (3)")
    p.add_argument(
        "--fit-epochs", type=int, help="instead of the benchmarks, time this many epochs of the Lightning fit"
    )
    p.add_argument("--fit-compile", action="store_true", help="with --fit-epochs: the compiled step (compile=True)")
    # For the smoke test and quick experiments; not part of the documented benchmark.
    p.add_argument("--shapes", type=parse_shapes, help=argparse.SUPPRESS)
    p.add_argument("--dataloader-batches", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.device not in ("auto", "cpu", "cuda"):
        p.error(f"--device: expected auto, cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device: cuda asked for, but torch sees no CUDA device")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    reps = args.reps if args.reps is not None else (7 if args.quick else 21)
    warmup = args.warmup if args.warmup is not None else 3
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads: expected an integer >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    for name, value in (
        ("--reps", reps),
        ("--warmup", warmup),
        ("--epoch-hidden", args.epoch_hidden),
        ("--epoch-repeats", args.epoch_repeats),
    ):
        if value < 1:
            p.error(f"{name}: expected an integer >= 1, got {value}")
    if args.epoch_images < EPOCH_BATCH:
        p.error(f"--epoch-images: expected at least one batch ({EPOCH_BATCH}), got {args.epoch_images}")
    if args.fit_epochs is not None and args.fit_epochs < 1:
        p.error(f"--fit-epochs: expected an integer >= 1, got {args.fit_epochs}")
    shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    dataloader_batches = (
        args.dataloader_batches if args.dataloader_batches is not None else (20 if args.quick else None)
    )
    for path in (args.json, args.plot):  # fail before the work, not after it
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    results = {"device": device.type, "env": environment(device), "steps": [], "epoch": None}
    results["env"].update({"quick": args.quick, "reps": reps, "warmup": warmup, "argv": sys.argv[1:]})

    def save() -> None:
        """Write what is measured so far (a run stopped by a time limit keeps its finished parts)."""
        if args.json is not None:
            results["goals"] = goals(results)
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps(results, indent=2) + "\n")
            os.replace(tmp, args.json)

    if args.fit_epochs is not None:
        results["fit"] = lightning_fit(
            epoch_data(args.epoch_images, device), device, args.epoch_hidden, args.fit_epochs, args.fit_compile
        )
    tf32s = (False, True) if device.type == "cuda" else (None,)  # None: no TF32 on a CPU
    for shape in shapes if args.fit_epochs is None else ():
        for row in bench_shape(shape, device, reps, warmup, tf32s):
            results["steps"].append(row)
            print(
                f"# step {shape} tf32={row['tf32']}: manual {row['manual_ms']:.3f} ms, "
                f"autograd {row['autograd_ms']:.3f} ms",
                file=sys.stderr,
                flush=True,
            )
        save()
    if device.type == "cuda":
        set_tf32(False)
    if not args.no_epoch and args.fit_epochs is None:
        results["epoch"] = bench_epoch(
            args.epoch_images, device, args.epoch_hidden, dataloader_batches, args.epoch_repeats
        )

    results["goals"] = goals(results)
    save()
    print(markdown(results))
    if args.json is not None:
        print(f"json: {args.json}")
    if args.plot is not None and results["steps"]:
        from bench_plot import plot_step_times

        plot_step_times(results, args.plot)
        print(f"plot: {args.plot}")
    return results


if __name__ == "__main__":
    main()
