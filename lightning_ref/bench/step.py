"""The step benchmark: one training step of the four variants, the compiled training step and the GEMM floor, timed
interleaved per shape, with the bytes each keeps for backward.

Variants, each timed as forward + backward (<variant>_ms) and with an SGD step (<variant>_sgd_ms):
    manual             TwoLayerNet.loss (the hand-written Functions), eager
    autograd           nn.Sequential(Flatten, Linear, ReLU, Linear) + F.cross_entropy, eager
    autograd_compiled  the same under torch.compile
    manual_compiled    TwoLayerNet.loss under torch.compile
and the compiled training step (manual_compiled_step_ms: forward, backward and SGD step in one compiled function, CUDA
graphs on a GPU, as TwoLayerClassifier(compile=True) runs it). The GEMM floor (floor_ms): the step's two large
products, s1 = x w1 (N,D)@(D,H) and dW1 = x^T dS1 (D,N)@(N,H), each timed in every layout either implementation uses
and transposed; the floor is the sum of each product's fastest layout, so no implementation of the step beats it by
more than noise.

Saved-for-backward bytes come from manualnet.crosscheck.saved (the count the harness uses): saved_bytes_<impl> counts
each distinct storage once, at its full size; _per_pack sums numel * itemsize over every pack; _activations leaves
out the storages of x, y and the parameters, which exist anyway; activations_per_example_<impl> is that over N.
"""

import torch
import torch.nn.functional as F

from lightning_ref.bench.timing import interleaved, spread
from manualnet import TwoLayerNet
from manualnet.crosscheck.saved import saved_for_backward
from manualnet.reference import reference_from

VARIANTS = ("manual", "autograd", "autograd_compiled", "manual_compiled")
SGD_LR = 1e-3  # the step-time SGD: small, so that thousands of steps leave the weights sane


def saved_bytes(loss_fn, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor]) -> dict[str, int]:
    """Bytes autograd keeps for backward from one forward of loss_fn(x, y): unique (each distinct storage once),
    per_pack (numel * itemsize over every pack), activations (unique, without x, y and params)."""
    _, saved = saved_for_backward(loss_fn, x, y)
    return {
        "unique": saved.nbytes(),
        "per_pack": saved.per_pack_nbytes(),
        "activations": saved.nbytes(held=[x, y, *params]),
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
    torch._dynamo.reset()  # each shape compiles afresh, static shapes (no recompile limits across shapes)
    models, loss_fns, fns, products, counted = step_callables(shape, device)
    rows = []
    for tf32 in tf32s:
        if tf32 is not None:
            set_tf32(tf32)
        stats = {name: spread(s) for name, s in interleaved(fns, device, reps, warmup).items()}
        row = step_row(shape, stats, products, counted)
        row["tf32"] = tf32
        if device.type == "cuda":
            row["peak_bytes"] = {v: peak_bytes(fns[v], list(models[v].parameters()), device) for v in VARIANTS}
        rows.append(row)
    return rows


def step_callables(shape: tuple[int, int, int, int], device: torch.device) -> tuple:
    """For one shape: the four variants' models and loss functions, every callable to time (the floor's products,
    each variant's step with and without SGD, the compiled training step), the products' names, and saved bytes."""
    n, d, h, c = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen).to(device)
    y = torch.randint(0, c, (n,), generator=gen).to(device)
    ds1 = torch.randn(n, h, generator=gen).to(device)
    manual = TwoLayerNet(d, h, c, seed=0, device=device)
    manual_c = TwoLayerNet(d, h, c, seed=0, device=device)
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
    fns["manual_compiled_step"] = make_compiled_step(TwoLayerNet(d, h, c, seed=0, device=device), x, y, device)
    counted = {
        "manual": saved_bytes(loss_fns["manual"], x, y, list(manual.parameters())),
        "autograd": saved_bytes(loss_fns["autograd"], x, y, list(ref.parameters())),
    }
    return models, loss_fns, fns, list(products), counted


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
