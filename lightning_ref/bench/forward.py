"""Forward mode's cost: the hand-written jvp against the forward, and the Hessian-vector product through the Functions
(manualnet.hvp.loss_hvp, forward over reverse) against double backward and torch.func forward over reverse of the
plain-torch reference, at the step benchmark's shapes (docs/performance.md).

    python -m lightning_ref.bench.forward                # every shape, markdown on stdout
    python -m lightning_ref.bench.forward --quick --json runs/bench/forward.json

Timed on x (N,D) float32, labels y (N,), C classes, tangents v on the four parameters (x has none, as in training):
    forward      two_layer_net(x, w1, b1, w2, b2) under no_grad: s2 only
    jvp          the same with v as forward-AD tangents (torch.autograd.forward_ad): s2 and its tangent
    grad         forward and the hand-written backward of the loss (the reverse-mode counterpart, for scale)
    hvp          loss_hvp: H v through the Functions (their jvp over their backward)
    hvp_double   the reference (nn.Linear's and F.cross_entropy's math) by double backward: d/dp <dL/dp, v>
    hvp_func     the reference by torch.func.jvp(torch.func.grad(loss)): PyTorch's own forward over reverse
Timing as the step benchmark's (lightning_ref.bench.timing): every callable timed interleaved (round robin, the order
rotated every round) after warm-up, a fast one over several back-to-back calls per sample; medians with quartiles. A
ratio is taken per round (the two callables timed side by side) and its median and quartiles reported.
"""

import argparse
import json
import math
from pathlib import Path

import torch
import torch.autograd.forward_ad as fwAD

from lightning_ref.bench.benchmark import SHAPES
from lightning_ref.bench.report import environment
from lightning_ref.bench.timing import interleaved, spread
from manualnet import softmax_cross_entropy, two_layer_net
from manualnet.hvp import loss_hvp
from manualnet.reference import reference_net_loss

QUICK_SHAPES = [(512, 3072, 512, 10), (64, 64, 64, 10)]
RATIOS = {
    "jvp / forward": ("jvp", "forward"),
    "hvp / hvp_double": ("hvp", "hvp_double"),
    "hvp / hvp_func": ("hvp", "hvp_func"),
}


def callables(shape: tuple[int, int, int, int]) -> dict:
    n, d, h, c = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    params = (
        torch.randn(d, h, generator=gen) / math.sqrt(d),
        torch.randn(h, generator=gen) * 0.1,
        torch.randn(h, c, generator=gen) / math.sqrt(h),
        torch.randn(c, generator=gen) * 0.1,
    )
    v = tuple(torch.randn(p.shape, generator=gen) for p in params)
    leaves = [p.clone().requires_grad_() for p in params]

    def forward():
        with torch.no_grad():
            two_layer_net(x, *params)

    def jvp():
        with fwAD.dual_level():
            fwAD.unpack_dual(two_layer_net(x, *(fwAD.make_dual(p, t) for p, t in zip(params, v, strict=True))))

    def grad():
        torch.autograd.grad(softmax_cross_entropy(two_layer_net(x, *leaves), y), leaves)

    def hvp_double():
        g = torch.autograd.grad(reference_net_loss(x, *leaves, y), leaves, create_graph=True)
        torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True)), leaves)

    def reference_grad(*p):
        return torch.func.grad(lambda *q: reference_net_loss(x, *q, y), argnums=(0, 1, 2, 3))(*p)

    return {
        "forward": forward,
        "jvp": jvp,
        "grad": grad,
        "hvp": lambda: loss_hvp(params, v, x, y),
        "hvp_double": hvp_double,
        "hvp_func": lambda: torch.func.jvp(reference_grad, params, v),
    }


def bench_shape(shape, reps: int, warmup: int) -> dict:
    samples = interleaved(callables(shape), torch.device("cpu"), reps, warmup)
    row = {"shape": list(shape), "ms": {name: spread(s) for name, s in samples.items()}, "ratios": {}}
    for label, (a, b) in RATIOS.items():
        row["ratios"][label] = spread([p / q for p, q in zip(samples[a], samples[b], strict=True)])
    return row


def markdown(rows: list[dict]) -> str:
    names = list(rows[0]["ms"])
    head = "| N, D, H, C | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(RATIOS) + " |"
    lines = [head, "|" + " --- |" * (1 + len(names) + len(RATIOS))]
    for r in rows:
        ms = [f"{r['ms'][n]['median']:.3g}" for n in names]
        ratios = [f"{q['median']:.2f} ({q['q1']:.2f}-{q['q3']:.2f})" for q in r["ratios"].values()]
        lines.append(f"| {', '.join(map(str, r['shape']))} | " + " | ".join(ms + ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, fewer repetitions")
    parser.add_argument("--reps", type=int, default=None, help="rounds of interleaved timing (default 21, quick 7)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    reps = args.reps or (7 if args.quick else 21)
    rows = [bench_shape(s, reps, warmup=2) for s in (QUICK_SHAPES if args.quick else SHAPES)]
    env = environment(torch.device("cpu"))
    machine = f"{env['device_name']}, {env['threads']} threads, torch {env['torch']}"
    print(f"{machine}; medians of {reps} interleaved rounds, ratios per round: median (quartiles)\n")
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "reps": reps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
