"""Custom ops (`torch.library.custom_op`, and `torch.library.Library` ops), correct and wrong, each with a reference in
plain torch ops, its make_inputs and the verdict check_function must give over the full battery (the compile checks
included) in float32 and float64: one op per fault class a kernel author meets (a wrong backward, a fake kernel of the
wrong shape or none, an input mutated without `mutates_args`, an output that is an input, a backward with a gradient
missing, no backward at all, a backward that writes into its incoming gradient), and correct ones that must pass with
no failure and no warning but the legal-but-costly kinds.

Ops are registered once, at import, in the `manualnet_zoo` namespace (registration is global to the process).
Each case is a FunctionUnderTest with `intended`, the check meant to catch its fault (None for a correct op), and
`why`; its exact verdict over the full battery is its block `ops/<name>` in tests/golden/verdicts.txt.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from manualnet.crosscheck import PROFILES, FunctionUnderTest

NS = "manualnet_zoo"


@dataclass(frozen=True, kw_only=True)
class Case(FunctionUnderTest):
    intended: str | None = None  # the check meant to catch its fault; None for a correct op
    why: str  # one line: what the op is and (for wrong ones) the fault


def randn(dtype, device, gen, *shape):
    return torch.randn(*shape, dtype=dtype, device=device, generator=gen)


# --------------------------------------------------------------------------- y = tanh(x @ w + b), and its faults


def linear_tanh_inputs(dtype, device, gen):
    x, w, b = randn(dtype, device, gen, 6, 4), randn(dtype, device, gen, 4, 3), randn(dtype, device, gen, 3)
    return {"general": (x, w, b), "batch of 1": (x[:1], w, b)}


def linear_tanh_reference(x, w, b):
    return torch.tanh(x @ w + b)


def linear_tanh_impl(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return torch.tanh(x @ w + b)


def linear_tanh_fake(x, w, b):
    return x.new_empty(x.shape[0], w.shape[1])  # (N, D) @ (D, H) -> (N, H), in the dtype matmul gives x


def save_inputs_and_output(ctx, inputs, output):
    x, w, b = inputs
    ctx.save_for_backward(x, w, output)


def linear_tanh_backward(ctx, g):
    # ds = g (1 - y^2); dx = ds w^T, dw = x^T ds, db = sum_n ds. Under autocast y (and g) are bf16: w, x cast to it.
    x, w, y = ctx.saved_tensors
    ds = g * (1 - y * y)
    dx = ds @ w.T.to(ds.dtype) if ctx.needs_input_grad[0] else None
    dw = x.T.to(ds.dtype) @ ds if ctx.needs_input_grad[1] else None
    db = ds.sum(0) if ctx.needs_input_grad[2] else None
    return dx, dw, db


def linear_tanh_op(name: str, impl=linear_tanh_impl, fake=linear_tanh_fake, backward=linear_tanh_backward):
    """manualnet_zoo::name: y = impl(x, w, b) with the given fake kernel and backward (None: not registered)."""
    op = torch.library.custom_op(f"{NS}::{name}", mutates_args=())(impl)
    if fake is not None:
        op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=save_inputs_and_output)
    return op


linear_tanh = linear_tanh_op("linear_tanh")


def bias_grad_mean(ctx, g):
    dx, dw, db = linear_tanh_backward(ctx, g)
    return dx, dw, None if db is None else db / g.shape[0]  # bug: db sums over the batch, it is not the mean


def backward_all_grads(ctx, g):
    # right, but computes every gradient whether asked or not (legal, costly)
    x, w, y = ctx.saved_tensors
    ds = g * (1 - y * y)
    return ds @ w.T.to(ds.dtype), x.T.to(ds.dtype) @ ds, ds.sum(0)


def bias_grad_forgotten(ctx, g):
    dx, dw, _ = linear_tanh_backward(ctx, g)
    return dx, dw  # bug: one gradient per input is three; the bias's is missing


def backward_scales_incoming_grad(ctx, g):
    x, w, y = ctx.saved_tensors
    ds = g.mul_(1 - y * y)  # bug: writes into the incoming gradient, which the caller may still use
    dx = ds @ w.T.to(ds.dtype) if ctx.needs_input_grad[0] else None
    dw = x.T.to(ds.dtype) @ ds if ctx.needs_input_grad[1] else None
    db = ds.sum(0) if ctx.needs_input_grad[2] else None
    return dx, dw, db


def fake_wrong_shape(x, w, b):
    return x.new_empty(x.shape[0], w.shape[0])  # bug: (N, D), the real output is (N, H)


linear_tanh_bias_mean = linear_tanh_op("linear_tanh_bias_mean", backward=bias_grad_mean)
linear_tanh_all_grads = linear_tanh_op("linear_tanh_all_grads", backward=backward_all_grads)
linear_tanh_grad_missing = linear_tanh_op("linear_tanh_grad_missing", backward=bias_grad_forgotten)
linear_tanh_grad_inplace = linear_tanh_op("linear_tanh_grad_inplace", backward=backward_scales_incoming_grad)
linear_tanh_bad_fake = linear_tanh_op("linear_tanh_bad_fake", fake=fake_wrong_shape)
linear_tanh_no_fake = linear_tanh_op("linear_tanh_no_fake", fake=None)
linear_tanh_no_backward = linear_tanh_op("linear_tanh_no_backward", backward=None)


# ----------------------------------------------------------------- softmax that subtracts the row max in place


@torch.library.custom_op(f"{NS}::softmax_shifts_input", mutates_args=())
def softmax_shifts_input(x: Tensor) -> Tensor:
    x.sub_(x.amax(-1, keepdim=True))  # bug: stabilises in the caller's tensor; mutates_args=() says it does not
    e = x.exp()
    return e / e.sum(-1, keepdim=True)


@softmax_shifts_input.register_fake
def _(x):
    return torch.empty_like(x)


def save_output(ctx, inputs, output):
    ctx.save_for_backward(output)


def softmax_backward(ctx, g):
    (p,) = ctx.saved_tensors  # dx = p (g - sum_j g_j p_j): the output alone, so the shifted input does no harm
    return p * (g - (g * p).sum(-1, keepdim=True))


softmax_shifts_input.register_autograd(softmax_backward, setup_context=save_output)


def rows_inputs(dtype, device, gen):
    return {"rows": (randn(dtype, device, gen, 5, 4),), "one row": (randn(dtype, device, gen, 1, 4),)}


# ---------------------------------------- a torch.library.Library op that returns its input when there is nothing to do

LIBRARY = torch.library.Library(NS, "FRAGMENT")
LIBRARY.define("scale_or_input(Tensor x, float scale) -> Tensor")
# bug: the schema promises a fresh output (Tensor, not Tensor(a)); scale 1 returns the input itself
LIBRARY.impl("scale_or_input", lambda x, scale: x if scale == 1.0 else x * scale, "CompositeExplicitAutograd")
torch.library.register_fake(f"{NS}::scale_or_input", lambda x, scale: torch.empty_like(x), lib=LIBRARY)


def save_scale(ctx, inputs, output):
    ctx.scale = inputs[1]


def scale_backward(ctx, g):
    return g * ctx.scale, None


torch.library.register_autograd(f"{NS}::scale_or_input", scale_backward, setup_context=save_scale, lib=LIBRARY)


def scale_inputs(dtype, device, gen):
    x = randn(dtype, device, gen, 5, 4)
    return {"scale 2": (x, 2.0), "scale 1": (x, 1.0)}


# --------------------------------------------------------- a torch.library.Library op with register_autograd, correct

LIBRARY.define("cube(Tensor x) -> Tensor")
LIBRARY.impl("cube", lambda x: x * x * x, "CompositeExplicitAutograd")
torch.library.register_fake(f"{NS}::cube", lambda x: torch.empty_like(x), lib=LIBRARY)


def save_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def cube_backward(ctx, g):
    (x,) = ctx.saved_tensors
    return g * 3 * x * x


torch.library.register_autograd(f"{NS}::cube", cube_backward, setup_context=save_input, lib=LIBRARY)


# ------------------------------------------------ an op with two overloads, passed as the packet torch.ops.ns.twice

LIBRARY.define("twice(Tensor x) -> Tensor")
LIBRARY.define("twice.scaled(Tensor x, float scale) -> Tensor")
LIBRARY.impl("twice", lambda x: 2 * x, "CompositeExplicitAutograd")
LIBRARY.impl("twice.scaled", lambda x, scale: 2 * scale * x, "CompositeExplicitAutograd")
for overload in ("twice", "twice.scaled"):
    torch.library.register_fake(f"{NS}::{overload}", lambda x, scale=1.0: torch.empty_like(x), lib=LIBRARY)
torch.library.register_autograd(f"{NS}::twice", lambda ctx, g: 2 * g, lib=LIBRARY)


def twice_inputs(dtype, device, gen):
    return (randn(dtype, device, gen, 5, 4),)


# ------------------------------------------------------------------------------------------------------- the zoo

LINEAR_TANH = (linear_tanh_reference, linear_tanh_inputs)

OPS = {
    "linear_tanh": Case(linear_tanh, *LINEAR_TANH, why="correct"),
    "linear_tanh_overload": Case(
        torch.ops.manualnet_zoo.linear_tanh.default, *LINEAR_TANH, why="correct, as torch.ops.ns.op.default"
    ),
    "calls_linear_tanh": Case(
        lambda x, w, b: 2 * linear_tanh(x, w, b),
        lambda x, w, b: 2 * linear_tanh_reference(x, w, b),
        linear_tanh_inputs,
        why="correct: a function that calls the op, found behind fn on the autograd graph",
    ),
    "cube": Case(torch.ops.manualnet_zoo.cube, lambda x: x**3, rows_inputs, why="correct, a Library op"),
    "twice": Case(
        torch.ops.manualnet_zoo.twice, lambda x: 2 * x, twice_inputs, why="correct, a packet of two overloads"
    ),
    "linear_tanh_all_grads": Case(
        linear_tanh_all_grads, *LINEAR_TANH, why="correct, but computes gradients that were not asked for"
    ),
    "linear_tanh_bias_mean": Case(
        linear_tanh_bias_mean,
        *LINEAR_TANH,
        intended="backward",
        why="the bias gradient is the mean over the batch, not the sum",
    ),
    "linear_tanh_grad_missing": Case(
        linear_tanh_grad_missing,
        *LINEAR_TANH,
        intended="backward",
        why="the backward returns two gradients for three inputs",
    ),
    "linear_tanh_no_backward": Case(
        linear_tanh_no_backward, *LINEAR_TANH, intended="backward", why="no register_autograd"
    ),
    "linear_tanh_grad_inplace": Case(
        linear_tanh_grad_inplace,
        *LINEAR_TANH,
        intended="incoming_grad_inplace",
        why="the backward multiplies the incoming gradient in place",
    ),
    "linear_tanh_bad_fake": Case(
        linear_tanh_bad_fake,
        *LINEAR_TANH,
        intended="opcheck_faketensor",
        why="the fake kernel's output is (N, D), the real one's (N, H)",
    ),
    "linear_tanh_no_fake": Case(
        linear_tanh_no_fake, *LINEAR_TANH, intended="opcheck_faketensor", why="no register_fake"
    ),
    "softmax_shifts_input": Case(
        softmax_shifts_input,
        lambda x: x.softmax(-1),
        rows_inputs,
        intended="opcheck_schema",
        why="subtracts the row max in the caller's tensor without mutates_args",
    ),
    "scale_or_input": Case(
        torch.ops.manualnet_zoo.scale_or_input.default,
        lambda x, scale: x * scale,
        scale_inputs,
        # Not opcheck_aot_dispatch_dynamic: on this op (an output aliasing its input at scale 1) its verdict was seen
        # to depend on what the session ran before it (it failed in one full `make test` run, passed alone).
        {"checks": [c for c in PROFILES["full"] if c != "opcheck_aot_dispatch_dynamic"]},
        intended="opcheck_schema",
        why="returns its input when scale is 1, where the schema promises a fresh tensor",
    ),
}
