"""The net's plain-torch reference: the same function as manualnet's hand-written Functions, by autograd.

Two forms of one computation, nn.Linear's and F.cross_entropy's math (nn.Linear stores its weight as (out, in), so
TwoLayerNet's w1 (D,H) and w2 (H,C) enter transposed):
    reference_net, reference_net_both, reference_net_loss   functions of (x, w1, b1, w2, b2[, y]) in TwoLayerNet's
                                                            layout: the harness's references (manualnet.net_crosscheck)
    reference_from                                          an nn.Sequential(Flatten, Linear, ReLU, Linear) holding a
                                                            copy of a TwoLayerNet's weights: the Lightning module's
                                                            impl "autograd", the live cross-check, the benchmark
    reference_scores                                        such an nn.Sequential run with a dropout mask
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from manualnet.module import TwoLayerNet


def _hidden(h: Tensor, m: Tensor | None) -> Tensor:
    """The hidden layer's output relu(s1), times the dropout mask m when there is one."""
    return h if m is None else h * m


def reference_net(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, m: Tensor | None = None) -> Tensor:
    """s2 = (relu(x w1 + b1) * m) w2 + b2 as nn.Linear computes it (weights stored transposed); m: None, no dropout."""
    return F.linear(_hidden(F.relu(F.linear(x, w1.T, b1)), m), w2.T, b2)


def reference_net_both(
    x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, m: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(s2, x2), the two outputs of TwoLayerNetFn."""
    x2 = _hidden(F.relu(F.linear(x, w1.T, b1)), m)
    return F.linear(x2, w2.T, b2), x2


def reference_net_loss(
    x: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    y: Tensor,
    m: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The mean softmax cross-entropy of reference_net's logits against labels y (N,), F.cross_entropy's label
    smoothing and the dropout mask m (None: none) included."""
    return F.cross_entropy(reference_net(x, w1, b1, w2, b2, m), y, label_smoothing=label_smoothing)


def reference_scores(ref: nn.Sequential, x: Tensor, m: Tensor | None = None) -> Tensor:
    """ref(x), the dropout mask m (N,H) applied to the ReLU's output when given (ref as reference_from builds it)."""
    if m is None:
        return ref(x)
    layers = tuple(type(layer) for layer in ref) if isinstance(ref, nn.Sequential) else ()
    if layers != (nn.Flatten, nn.Linear, nn.ReLU, nn.Linear):
        got = f"nn.Sequential({', '.join(t.__name__ for t in layers)})" if layers else type(ref).__name__
        raise ValueError(
            f"ref: expected nn.Sequential(Flatten, Linear, ReLU, Linear) to apply a dropout mask, got {got}"
        )
    flatten, linear1, relu, linear2 = ref
    return linear2(relu(linear1(flatten(x))) * m)


def reference_from(model: TwoLayerNet) -> nn.Sequential:
    """nn.Sequential(Flatten, Linear(D,H), ReLU, Linear(H,C)) holding copies of model's weights.

    nn.Linear stores weight as (out, in), so its weights are w1^T (H,D) and w2^T (C,H).
    """
    # skip_init: the weights are copied in below, so nn.Linear's own init (which would draw from the global RNG and
    # change what the training run draws next) is skipped.
    kw = {"device": model.w1.device, "dtype": model.w1.dtype}
    ref = nn.Sequential(
        nn.Flatten(),
        nn.utils.skip_init(nn.Linear, model.in_features, model.hidden, **kw),
        nn.ReLU(),
        nn.utils.skip_init(nn.Linear, model.hidden, model.num_classes, **kw),
    )
    copy_to_reference(model, ref)
    return ref


@torch.no_grad()
def copy_to_reference(model: TwoLayerNet, ref: nn.Sequential) -> None:
    """Write model's w1, b1, w2, b2 into ref's Linear layers (transposing the weights)."""
    ref[1].weight.copy_(model.w1.T)
    ref[1].bias.copy_(model.b1)
    ref[3].weight.copy_(model.w2.T)
    ref[3].bias.copy_(model.b2)


@torch.no_grad()
def copy_from_reference(ref: nn.Sequential, model: TwoLayerNet) -> None:
    """Write ref's Linear weights back into model's w1, b1, w2, b2 (transposing the weights)."""
    for name, value in reference_weights(ref).items():
        getattr(model, name).copy_(value)


def reference_weights(ref: nn.Sequential) -> dict[str, torch.Tensor]:
    """ref's parameters in TwoLayerNet's layout and names: w1 (D,H), b1 (H,), w2 (H,C), b2 (C,) (views, no copy)."""
    return {"w1": ref[1].weight.T, "b1": ref[1].bias, "w2": ref[3].weight.T, "b2": ref[3].bias}


def reference_grads(ref: nn.Sequential) -> dict[str, torch.Tensor]:
    """ref's parameter gradients in TwoLayerNet's layout and names: w1 (D,H), b1 (H,), w2 (H,C), b2 (C,)."""
    return {
        "w1": ref[1].weight.grad.T,
        "b1": ref[1].bias.grad,
        "w2": ref[3].weight.grad.T,
        "b2": ref[3].bias.grad,
    }
