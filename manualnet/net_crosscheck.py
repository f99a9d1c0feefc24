"""The two-layer net's own cross-check: its references in plain torch ops and its sample inputs, edge cases included,
for manualnet.crosscheck.check_function (used by tests/test_gradients.py, tests/test_transforms.py and
manualnet.gradient_report). The references are manualnet.reference's (nn.Linear's and F.cross_entropy's math).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from manualnet.crosscheck import FunctionUnderTest, Sample
from manualnet.functional import (
    SoftmaxCrossEntropyFn,
    TwoLayerNetFn,
    dropout_mask,
    softmax_cross_entropy,
    two_layer_net,
)
from manualnet.reference import reference_net, reference_net_both, reference_net_loss

# The samples (N, D, H, C) away from ReLU's kink: a general one, a batch of one, one hidden unit, two classes.
SHAPES = {"general": (6, 7, 5, 4), "batch of 1": (1, 3, 4, 2), "one hidden unit": (4, 5, 1, 3), "C=2": (3, 6, 5, 2)}
KINKS = ("kink",)  # the sample with pre-activations exactly 0: no finite differences there
EPS = 0.1  # the label smoothing of the smoothed samples: Yeps = 0.9 Y + 0.1 / C
P_DROP = 0.5  # the dropout probability of the samples' masks: entries 0 or 1 / (1 - 0.5) = 2


def net_loss(
    x: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    y: Tensor,
    m: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The loss through both hand-written Functions (m: the dropout mask or None; label_smoothing: eps)."""
    return softmax_cross_entropy(two_layer_net(x, w1, b1, w2, b2, m), y, label_smoothing)


def _weights(n, d, h, c, dtype, device, gen, margin=1e-2):
    """x, w1, b1, w2, b2 with every pre-activation at least `margin` from 0 (finite differences need that)."""
    for _ in range(100):
        x = torch.randn(n, d, dtype=dtype, device=device, generator=gen)
        w1 = torch.randn(d, h, dtype=dtype, device=device, generator=gen) / math.sqrt(d)
        b1 = torch.randn(h, dtype=dtype, device=device, generator=gen) * 0.1
        if (x @ w1 + b1).abs().min() > margin:
            break
    else:
        raise AssertionError("could not draw inputs away from the ReLU kink")
    w2 = torch.randn(h, c, dtype=dtype, device=device, generator=gen) / math.sqrt(h)
    b2 = torch.randn(c, dtype=dtype, device=device, generator=gen) * 0.1
    return x, w1, b1, w2, b2


def net_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, tuple]:
    """Samples (x, w1, b1, w2, b2): the SHAPES, pre-activations exactly 0 ("kink"), every hidden unit dead."""
    samples = {name: _weights(*shape, dtype, device, generator) for name, shape in SHAPES.items()}
    # Small integers are exact in every float dtype, so s1 = x w1 + b1 is computed exactly and can be made 0.
    n, d, h, c = 6, 5, 7, 4
    x, w1, b1 = (torch.randint(-3, 4, s, device=device, generator=generator).to(dtype) for s in ((n, d), (d, h), (h,)))
    w1[:, 0], b1[0] = 0.0, 0.0  # unit 0: s1 == 0 for every row
    b1[1] = -(x[0] @ w1[:, 1])  # unit 1: s1 == 0 for row 0 only
    samples["kink"] = (x, w1, b1, *_weights(n, 1, h, c, dtype, device, generator)[3:])
    x, w1, b1, w2, b2 = _weights(5, 6, 4, 3, dtype, device, generator)
    samples["dead units"] = (x, w1, torch.full_like(b1, -1e3), w2, b2)  # s1 < 0 everywhere
    return samples


def loss_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, tuple]:
    """Samples (s2, y): general, a batch of 1, C=2, logits of magnitude 1e4."""
    samples = {}
    for name, (n, c, scale) in {"general": (5, 4, 1.0), "batch of 1": (1, 3, 1.0), "C=2": (6, 2, 1.0)}.items():
        s2 = torch.randn(n, c, dtype=dtype, device=device, generator=generator) * scale
        samples[name] = (s2, torch.randint(0, c, (n,), device=device, generator=generator))
    # exp(1e4) overflows even float64 unless the row max is subtracted first.
    s2 = torch.randn(8, 4, dtype=dtype, device=device, generator=generator) * 1e4
    samples["logits 1e4"] = (s2, torch.randint(0, 4, (8,), device=device, generator=generator))
    return samples


def smoothed_loss_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, Sample]:
    """loss_inputs' samples (general, a batch of 1, C=2, logits 1e4) with label_smoothing=EPS."""
    return {name: Sample(s2, y, label_smoothing=EPS) for name, (s2, y) in loss_inputs(dtype, device, generator).items()}


def _mask(x: Tensor, w1: Tensor, generator: torch.Generator) -> Tensor:
    """A dropout mask m (N,H) for x and w1, drawn from the generator: P_DROP of its entries 0, the others 2."""
    return dropout_mask((x.shape[0], w1.shape[1]), P_DROP, generator, x.device, x.dtype)


def dropout_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, tuple]:
    """net_inputs' samples (x, w1, b1, w2, b2, m), each with a mask drawn from the generator (the kink sample
    included), and the general sample again with every unit of its first row dropped (m[0] = 0: that row's s2 is b2)
    and with nothing dropped (m = 1, p = 0)."""
    samples = {name: (*s, _mask(s[0], s[1], generator)) for name, s in net_inputs(dtype, device, generator).items()}
    x, w1, b1, w2, b2, m = samples["general"]
    samples["row dropped"] = (x, w1, b1, w2, b2, torch.cat([torch.zeros_like(m[:1]), m[1:]]))
    samples["nothing dropped"] = (x, w1, b1, w2, b2, torch.ones_like(m))
    return samples


def net_loss_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, tuple]:
    """net_inputs with labels y appended, and the general sample with logits of magnitude 1e4."""
    samples = {}
    for name, (x, w1, b1, w2, b2) in net_inputs(dtype, device, generator).items():
        y = torch.randint(0, w2.shape[1], (x.shape[0],), device=device, generator=generator)
        samples[name] = (x, w1, b1, w2, b2, y)
    samples["logits 1e4"] = _huge_logits(*samples["general"][:5], generator)
    return samples


def regularised_inputs(dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> dict[str, Sample]:
    """net_loss_inputs' samples (x, w1, b1, w2, b2, y, m) with a dropout mask m from the generator and
    label_smoothing=EPS: both regularisers at once, against F.cross_entropy's smoothing on the masked net."""
    samples = {}
    for name, (x, w1, b1, w2, b2, y) in net_loss_inputs(dtype, device, generator).items():
        samples[name] = Sample(x, w1, b1, w2, b2, y, _mask(x, w1, generator), label_smoothing=EPS)
    return samples


def _huge_logits(x, w1, b1, w2, b2, generator, gap=20.0):
    """The sample with w2 and b2 redrawn so that the logits s2 are ~1e4, every row's top two at least `gap` apart,
    and every label wrong (not the row's largest logit).

    At 1e4 the logits carry float32 rounding of ~1e-3, which either side rounds its own way: near a tie, or for a
    right and confident row (gradient ~ exp(-gap)), that rounding alone moves the gradient by more than 1e-5 of
    itself. Away from those, the gradients are O(1) and well conditioned.
    """
    for _ in range(100):
        w2 = torch.randn(w2.shape, dtype=w2.dtype, device=w2.device, generator=generator) * 1e4
        b2 = torch.randn(b2.shape, dtype=b2.dtype, device=b2.device, generator=generator) * 1e4  # rows with x2 = 0
        s2 = reference_net(x, w1, b1, w2, b2)
        top2 = s2.topk(2, dim=1).values
        if (top2[:, 0] - top2[:, 1]).min() >= gap:
            break
    else:
        raise AssertionError("could not draw logits of 1e4 without near ties")
    y = (s2.argmax(dim=1) + 1) % s2.shape[1]  # never the largest logit
    return x, w1, b1, w2, b2, y


# The net's Functions under test, each with its reference, its samples and its options of check_function.
NET = FunctionUnderTest(two_layer_net, reference_net, net_inputs, {"functions": (TwoLayerNetFn,), "kinks": KINKS})
NET_BOTH_OUTPUTS = FunctionUnderTest(TwoLayerNetFn.apply, reference_net_both, net_inputs, {"kinks": KINKS})
LOSS = FunctionUnderTest(
    softmax_cross_entropy, F.cross_entropy, loss_inputs, {"functions": (SoftmaxCrossEntropyFn,), "batch_args": (0, 1)}
)
NET_LOSS = FunctionUnderTest(
    net_loss,
    reference_net_loss,
    net_loss_inputs,
    {"functions": (TwoLayerNetFn, SoftmaxCrossEntropyFn), "kinks": KINKS, "batch_args": (0, 5)},
)
# The regularisers. The mask m is a float tensor that gets no gradient: no_grad=("m",) passes it as it is
# (the harness differentiates every other floating input), as the reference does with the very same mask.
LOSS_SMOOTHED = FunctionUnderTest(
    softmax_cross_entropy,
    F.cross_entropy,  # F.cross_entropy(s2, y, label_smoothing=EPS): torch's own smoothing, the independent truth
    smoothed_loss_inputs,
    {"functions": (SoftmaxCrossEntropyFn,), "batch_args": (0, 1)},
)
NET_DROPOUT = FunctionUnderTest(
    two_layer_net,
    reference_net,  # F.linear(F.relu(F.linear(x, w1.T, b1)) * m, w2.T, b2)
    dropout_inputs,
    {"functions": (TwoLayerNetFn,), "kinks": KINKS, "batch_args": (0, 5), "no_grad": ("m",)},
)
NET_LOSS_REGULARISED = FunctionUnderTest(
    net_loss,
    reference_net_loss,
    regularised_inputs,
    {
        "functions": (TwoLayerNetFn, SoftmaxCrossEntropyFn),
        "kinks": KINKS,
        "batch_args": (0, 5, 6),
        "no_grad": ("m",),
    },
)
