"""The two-layer net and its loss as custom autograd Functions, with the backward pass written by hand.

Forward (docs/derivation.md, shapes for a batch of N rows):

    s1 = x @ w1 + b1        (N,D)@(D,H) + (H,) -> (N,H)
    x2 = max(0, s1) * m     (N,H); m is the dropout mask (0 or 1/(1-p) per entry), or no mask: x2 = max(0, s1)
    s2 = x2 @ w2 + b2       (N,H)@(H,C) + (C,) -> (N,C)
    L  = mean_i( -sum_j Yeps_ij ln softmax(s2)_ij ),   Yeps = (1 - eps) Y + eps / C   (eps = 0: -ln P[i, y_i])

The backward of each Function is the chain rule from the derivation, in matrix form, using only differentiable
torch ops so that double backward (gradgradcheck) is exact. The jvp of each is the same chain rule run forwards (a
tangent, written with a dot and named `*_dot` in code, is pushed from the inputs to the outputs), also in
differentiable torch ops, so that forward-over-reverse (torch.func.hessian) and reverse-over-forward are exact too.
Both Functions use the `forward` + `setup_context` form with `generate_vmap_rule = True`, so `torch.func.grad`,
`jvp` and `vmap` work over them.
"""

import torch
from torch import Tensor

from manualnet.dispatch import Seen, apply, autocast_dtype, bind_positionally, like, no_jvp_twin, transposed
from manualnet.validate import (
    assert_labels_in_range,
    assert_mask_nonnegative,
    autocast_dtype_of,
    check_fraction,
    check_labels,
    check_mask_grad,
    check_net_inputs,
    check_scores,
)


class TwoLayerNetFn(torch.autograd.Function):
    """s2 = (max(0, x @ w1 + b1) * m) @ w2 + b2, returning (s2, x2); backward by hand. m: the dropout mask, or None."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, m: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        s1 = torch.addmm(b1, x, w1)  # s1 = x w1 + b1     (N,D)@(D,H) -> (N,H)
        x2 = s1.clamp_min_(0)  # x2 = max(0, s1)   (N,H), in place: s1 is not kept (no second N*H buffer)
        if m is not None:
            x2 = x2.mul_(m)  # x2 = max(0, s1) * m   (N,H), inverted dropout: m is 0 (dropped) or 1/(1-p) (kept)
        s2 = torch.addmm(b2, x2, w2)  # s2 = x2 w2 + b2   (N,H)@(H,C) -> (N,C)
        # x2 is returned as a second output so that it can be saved as an output: saved intermediates would be
        # constants to double backward and invisible to torch.func.
        return s2, x2

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w1, b1, w2, b2, m = inputs
        _, x2 = output
        # Saved, and why:
        #   x2  for dw2 = x2^T ds2, and for the ReLU mask [s1 > 0] = [x2 > 0] (so s1 itself is not kept; with a
        #       dropout mask the two differ only where m = 0, where the gradient through x2 is 0 anyway);
        #   m   the dropout mask, for dX2 -> dS1 (None without dropout);
        #   w2  for dx2 = ds2 w2^T;
        #   x   for dw1 = x^T ds1 (an input: no copy is made), only when w1 needs a gradient;
        #   w1  for dx = ds1 w1^T, only when x needs a gradient.
        # b1 and b2 are not needed: d(s)/d(b) = 1.
        need_x, need_w1 = ctx.needs_input_grad[:2]
        # The jvp needs all four (x for x w1_dot, w1 for x_dot w1): whether a tangent will come is not known here.
        # They are references (inputs and the x2 output), and forward AD drops them once the jvp has run.
        ctx.save_for_forward(x, w1, w2, x2, m)
        if torch._C._are_functorch_transforms_active():
            # vmap's generated rule keeps one set of batch dims for both saves (the last one's): the two must hold
            # the same tensors, or jvp(vmap(...)) reads a batched x or w1 as unbatched.
            need_x = need_w1 = True
        ctx.save_for_backward(x if need_w1 else None, w1 if need_x else None, w2, x2, m)
        ctx.w1_transposed = transposed(w1)  # w1's memory layout, the layout dW1 is computed in
        ctx.set_materialize_grads(False)  # ds2, dx2_out or a tangent may be None: we skip its terms, no zeros added

    @staticmethod
    def backward(ctx, ds2: Tensor | None, dx2_out: Tensor | None):
        x, w1, w2, x2, m = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad  # m: no gradient (validate refuses one)
        dx = dw1 = db1 = dw2 = db2 = None
        if ds2 is not None:
            if need_w2:
                # dW2 = X2^T dS2   (H,N)@(N,C) -> (H,C), computed as (dS2^T X2)^T: with C small, the CPU matmul is
                # faster in that order. Returned in w2's memory layout (dispatch.like): stored without a copy.
                dw2 = like(w2, (ds2.T @ x2).T)
            if need_b2:
                db2 = ds2.sum(0)  # db2 = sum_i dS2[i]   (N,C) -> (C,)
        if not (need_x or need_w1 or need_b1):
            return dx, dw1, db1, dw2, db2, None  # nothing below the ReLU was asked for: no dX2, no dS1
        dx2 = dx2_out  # a gradient arriving on the x2 output itself (only in double backward)
        if ds2 is not None:
            dx2_s2 = ds2 @ w2.T  # dX2 = dS2 W2^T       (N,C)@(C,H) -> (N,H)
            dx2 = dx2_s2 if dx2 is None else dx2 + dx2_s2
        if dx2 is None:
            return dx, dw1, db1, dw2, db2, None
        if m is not None:
            dx2 = dx2 * m  # through the dropout: dH = dX2 * M   (N,H), H = max(0, S1) the ReLU's output
        # dS1 = dH * [S1 > 0] = dH * [X2 > 0]   (N,H); the kink s1 == 0 gets 0, as torch's ReLU. threshold_backward
        # is exactly this mask-and-multiply in one pass (differentiable in dX2 for double backward); written as
        # dx2 * (x2 > 0) the bool-times-float product takes a slow casting loop, 3-5x slower on CPU.
        ds1 = torch.ops.aten.threshold_backward(dx2, x2, 0)
        if need_w1:
            # dW1 = X^T dS1   (D,N)@(N,H) -> (D,H), computed in w1's memory layout: as (dS1^T X)^T where w1 is stored
            # transposed (as nn.Linear's (H,D) weight, TwoLayerNet's layout), else directly.
            dw1 = (ds1.T @ x).T if ctx.w1_transposed else x.T @ ds1
        if need_b1:
            db1 = ds1.sum(0)  # db1 = sum_i dS1[i]    (N,H) -> (H,)
        if need_x:
            dx = ds1 @ w1.T  # dX = dS1 W1^T          (N,H)@(H,D) -> (N,D)
        return dx, dw1, db1, dw2, db2, None

    @staticmethod
    def jvp(ctx, x_dot, w1_dot, b1_dot, w2_dot, b2_dot, m_dot):
        # Forward mode: each tangent has its primal's shape; a None tangent (no tangent given) drops its terms.
        x, w1, w2, x2, m = ctx.saved_tensors
        _check_tangents(x2, x=x_dot, w1=w1_dot, b1=b1_dot, w2=w2_dot, b2=b2_dot)
        if m_dot is not None:
            raise ValueError("m: expected a dropout mask without a tangent (the mask is not differentiated), got one")
        n, c = x2.shape[0], w2.shape[1]
        s1_dot = _sum(
            None if x_dot is None else x_dot @ w1,  # ẋ w1    (N,D)@(D,H) -> (N,H)
            None if w1_dot is None else x @ w1_dot,  # x ẇ1    (N,D)@(D,H) -> (N,H)
            None if b1_dot is None else b1_dot.expand_as(x2),  # ḃ1 added to every row   (H,) -> (N,H)
        )  # ṡ1 = ẋ w1 + x ẇ1 + ḃ1   (N,H)
        if s1_dot is None:
            x2_dot = torch.zeros_like(x2)  # ẋ2 = 0: forward AD refuses a None tangent for a floating output
        else:
            # ẋ2 = [s1 > 0] ṡ1 (* m)   (N,H): the same mask-and-multiply as backward's dS1, 0 at the kink
            x2_dot = torch.ops.aten.threshold_backward(s1_dot if m is None else s1_dot * m, x2, 0)
        s2_dot = _sum(
            None if s1_dot is None else x2_dot @ w2,  # ẋ2 w2   (N,H)@(H,C) -> (N,C)
            None if w2_dot is None else x2 @ w2_dot,  # x2 ẇ2   (N,H)@(H,C) -> (N,C)
            None if b2_dot is None else b2_dot.expand(n, c),  # ḃ2 added to every row   (C,) -> (N,C)
        )  # ṡ2 = ẋ2 w2 + x2 ẇ2 + ḃ2   (N,C)
        return s2_dot, x2_dot


class SoftmaxCrossEntropyFn(torch.autograd.Function):
    """L = mean_i( -sum_j Yeps_ij ln softmax(s2)_ij ) with Yeps = (1 - eps) Y + eps / C (label smoothing; eps = 0:
    -ln P[i, y_i]); backward dL/ds2 = (P - Yeps) / N by hand."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s2: Tensor, y: Tensor, eps: float = 0.0) -> Tensor:
        # ln softmax(s2) = s2 - ln sum_j exp(s2_j), row-wise with the row max subtracted first (exp never overflows)
        log_p = torch.log_softmax(s2, dim=1)  # (N,C)
        nll = -log_p.gather(1, y.unsqueeze(1))  # -ln P[i, y_i]   (N,1)
        if eps == 0:
            return nll.mean()  # averaged over the N rows
        # L_i = -(1 - eps) ln P[i, y_i] - (eps / C) sum_j ln P_ij   (N,): the smoothed target's cross-entropy
        return ((1 - eps) * nll.squeeze(1) - eps * log_p.mean(1)).mean()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        s2, y, ctx.eps = inputs
        # Saved: s2 (an input) to recompute P in backward, and y for where Y has its 1s. P is recomputed rather than
        # kept from forward so that double backward sees it as a function of s2.
        ctx.save_for_backward(s2, y)
        ctx.save_for_forward(s2, y)  # the same two for the jvp (P from s2, and y)

    @staticmethod
    def backward(ctx, dloss: Tensor):
        s2, y = ctx.saved_tensors
        n, c = s2.shape
        eps = ctx.eps
        p = torch.softmax(s2, dim=1)  # P = softmax(S2)   (N,C)
        # P - Yeps, with Yeps = (1 - eps) Y + eps / C and Y the one-hot labels (one 1 per row, at y_i): subtract
        # 1 - eps at (i, y_i), no (N,C) one-hot built, then eps / C everywhere.
        p_minus_y = p.scatter_add(1, y.unsqueeze(1), p.new_full((n, 1), -(1.0 - eps)))  # (N,C)
        if eps != 0:
            p_minus_y = p_minus_y - eps / c
        ds2 = p_minus_y * (dloss / n)  # dL/dS2 = (P - Yeps) / N   (N,C)
        return ds2, None, None

    @staticmethod
    def jvp(ctx, s2_dot: Tensor, y_dot: None, eps_dot: None) -> Tensor:
        # y_dot is always None: y is integer, and forward AD gives integer tensors no tangent; eps is a number.
        s2, y = ctx.saved_tensors
        eps = ctx.eps
        _check_tangents(s2, s2=s2_dot)
        p = torch.softmax(s2, dim=1)  # P = softmax(S2)   (N,C)
        s2_dot_y = s2_dot.gather(1, y.unsqueeze(1)).squeeze(1)  # ṡ2_{i,y_i}   (N,)
        # L̇ = mean_i( sum_j (P_ij - Yeps_ij) ṡ2_ij )   (N,C) -> (N,) -> scalar: dL_i/ds_j = p_j - Yeps_ij again, so
        # L̇_i = sum_j P_ij ṡ2_ij - (1 - eps) ṡ2_{i,y_i} - (eps / C) sum_j ṡ2_ij
        if eps == 0:
            return ((p * s2_dot).sum(1) - s2_dot_y).mean()
        return ((p * s2_dot).sum(1) - (1 - eps) * s2_dot_y - eps * s2_dot.mean(1)).mean()


def _check_tangents(primal: Tensor, **tangents: Tensor | None) -> None:
    """Each tangent given must have the dtype and device of `primal` (those of every primal: the wrappers checked).

    Forward AD refuses a tangent of another shape itself, before the jvp runs; another dtype or device it lets through.
    """
    for name, t in tangents.items():
        if t is not None and t.dtype != primal.dtype:
            raise TypeError(f"{name}'s tangent: expected dtype {primal.dtype} (that of {name}), got {t.dtype}")
        if t is not None and t.device != primal.device:
            raise ValueError(f"{name}'s tangent: expected a tensor on {name}'s device {primal.device}, got {t.device}")


def _sum(*terms: Tensor | None) -> Tensor | None:
    """The sum of the terms that are not None; None when all are."""
    present = [t for t in terms if t is not None]
    return sum(present[1:], present[0]) if present else None


# The forms torch.compile needs (twins without the jvp) and the fast argument binding: manualnet/dispatch.py.
_TwoLayerNetNoJvpFn, _SoftmaxCrossEntropyNoJvpFn = no_jvp_twin(TwoLayerNetFn), no_jvp_twin(SoftmaxCrossEntropyFn)
for _fn in (TwoLayerNetFn, SoftmaxCrossEntropyFn):
    bind_positionally(_fn)
_NET_CHECKED, _LOSS_CHECKED = Seen(), Seen()  # argument signatures already checked (dispatch.Seen)


def two_layer_net(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, m: Tensor | None = None) -> Tensor:
    """Class scores s2 = (max(0, x @ w1 + b1) * m) @ w2 + b2 for x (N,D), w1 (D,H), b1 (H,), w2 (H,C), b2 (C,).

    m: the hidden layer's dropout mask (N,H) in x's dtype and device, entries >= 0 (dropout_mask draws one: 0 or
    1/(1-p)), not differentiated; None (the default): no dropout. Under torch.autocast the inputs are cast as
    nn.Linear's would be (to the autocast dtype of x's device), and m with them. Raises ValueError / TypeError naming
    the argument on any shape, dtype or device mismatch.
    """
    cast = autocast_dtype(x) if isinstance(x, Tensor) else None
    tensors = (x, w1, b1, w2, b2) if m is None else (x, w1, b1, w2, b2, m)
    signature = _NET_CHECKED.key(tensors, cast)
    if signature not in _NET_CHECKED:
        check_net_inputs(x, w1, b1, w2, b2, autocast=cast, m=m)
        _NET_CHECKED.add(signature)
    elif m is not None:
        check_mask_grad(m)  # requires_grad is not in the signature: checked on every call
        assert_mask_nonnegative(m)  # the values: checked on every call
    if cast is not None:
        x, w1, b1, w2, b2 = (t.to(autocast_dtype_of(t, cast)) for t in (x, w1, b1, w2, b2))
        m = None if m is None else m.to(autocast_dtype_of(m, cast))
        with torch.autocast(x.device.type, enabled=False):
            s2, _ = apply(TwoLayerNetFn, _TwoLayerNetNoJvpFn, x, w1, b1, w2, b2, m)
        return s2
    s2, _ = apply(TwoLayerNetFn, _TwoLayerNetNoJvpFn, x, w1, b1, w2, b2, m)
    return s2


def softmax_cross_entropy(s2: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Batch mean of -sum_j Yeps_ij ln softmax(s2)_ij for scores s2 (N,C) and int64 labels y (N,) in [0, C), with
    Yeps = (1 - eps) Y + eps / C, eps = label_smoothing in [0, 1): F.cross_entropy(s2, y, label_smoothing=eps).

    eps = 0 (the default) is -ln softmax(s2)[i, y_i]. Under torch.autocast the scores are computed in float32, as
    F.cross_entropy does.
    """
    check_fraction("label_smoothing", label_smoothing)  # on every call: a number, no signature to cache
    signature = _LOSS_CHECKED.key((s2, y))
    if signature in _LOSS_CHECKED:
        assert_labels_in_range(y, s2.shape[1])  # the values: checked on every call
    else:
        check_scores(s2)  # before reading s2.shape
        check_labels(y, n=s2.shape[0], num_classes=s2.shape[1], device=s2.device)
        _LOSS_CHECKED.add(signature)
    if autocast_dtype(s2) is not None:
        with torch.autocast(s2.device.type, enabled=False):
            s2 = s2.float() if s2.dtype != torch.float64 else s2
            return apply(SoftmaxCrossEntropyFn, _SoftmaxCrossEntropyNoJvpFn, s2, y, label_smoothing)
    return apply(SoftmaxCrossEntropyFn, _SoftmaxCrossEntropyNoJvpFn, s2, y, label_smoothing)


def dropout_mask(
    shape: tuple[int, int],
    p: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Inverted dropout's mask for a hidden layer of `shape` (N,H): each entry 1/(1-p) with probability 1-p, else 0
    (dropped), so that E[x2] = max(0, s1) and nothing is rescaled at evaluation. Drawn from `generator` (on `device`;
    the default generator when None). p in [0, 1); p = 0 gives ones."""
    check_fraction("p", p)
    keep = torch.empty(shape, device=device, dtype=dtype).bernoulli_(1 - p, generator=generator)
    return keep.div_(1 - p)  # M = Bernoulli(1 - p) / (1 - p)   (N,H)
