"""What fn is compared with: the reference's outputs, gradients and tangents in the case's dtype, their float64
truth (the hull of one-sided values at a kink sample), cached per case; and the comparisons of a whole set."""

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from manualnet.crosscheck.case import (
    KINK_STEP,
    Case,
    Inputs,
    NotApplicable,
    Tally,
    as_outputs,
    floating_outputs,
    grads,
    incoming,
    is_float,
    on_floats,
    to_float64,
)


def need_reference(case: Case) -> None:
    if case.reference is None:
        raise NotApplicable("needs a reference")


def shifted(inputs: Inputs, sign: float) -> Inputs:
    """Every differentiable input moved by sign * KINK_STEP * (1 + max |x|): past a kink, to one side."""
    return inputs.put(
        {k: (x + sign * KINK_STEP * (1 + x.abs().max())) for k in inputs.keys() if (x := inputs.get(k)).numel()}
    )


def truth_of(case: Case, name: str, compute):
    """The float64 truth of compute(inputs in float64) for sample `name`: a dict of tensors, or at a kink sample the
    elementwise hull (lo, hi) of the values at the point and just to either side. None when the case is float64
    and smooth: the reference's own values are the truth."""
    s64 = to_float64(case.samples[name])
    if name not in case.kinks:
        return None if case.dtype == torch.float64 else compute(s64)
    at = [compute(s64), compute(shifted(s64, 1.0)), compute(shifted(s64, -1.0))]
    out = {}
    for k in at[0]:
        vals = [v[k] for v in at if v[k] is not None]
        if not vals:
            out[k] = None
            continue
        stacked = torch.stack([v.detach().double() for v in vals])
        out[k] = (stacked.amin(0), stacked.amax(0))
    return out


def want_grads(case: Case, name: str, wrt=None, outputs=None) -> tuple[dict, dict | None]:
    """(the reference's gradients in the case's dtype, their float64 truth), cached per sample."""
    key = ("grads", name, None if wrt is None else tuple(wrt), None if outputs is None else tuple(outputs))
    if key not in case.cache:
        s, f = case.samples[name], case.want_fn()
        want = grads(case, f, s, wrt=wrt, outputs=outputs)
        truth = truth_of(case, name, lambda s64: grads(case, f, s64, wrt=wrt, outputs=outputs))
        case.cache[key] = (want, truth)
    return case.cache[key]


def want_outputs(case: Case, name: str) -> tuple[tuple, tuple | None]:
    """(the reference's outputs in the case's dtype, their float64 truth), cached per sample."""
    key = ("outputs", name)
    if key not in case.cache:
        f = case.want_fn()
        with torch.no_grad():
            want = as_outputs(case.call(f, case.samples[name]))
            truth = None
            if case.dtype != torch.float64:
                truth = as_outputs(case.call(f, to_float64(case.samples[name])))
        case.cache[key] = (want, truth)
    return case.cache[key]


def compare_grads(t: Tally, label: str, got: dict, want: dict, truth: dict | None) -> None:
    for k, g in got.items():
        t.compare_grad(f"{label} d({t.name(k)})".strip(), g, want[k], None if truth is None else truth[k])


def compare_outputs(t: Tally, label: str, got: tuple, want: tuple, truth: tuple | None) -> None:
    if len(got) != len(want):
        t.fail(f"{label}: {len(got)} outputs, the reference's {len(want)}")
        return
    for k, (o, w) in enumerate(zip(got, want, strict=True)):
        if isinstance(o, Tensor) and isinstance(w, Tensor) and o.dtype != w.dtype:
            t.fail(f"{label} output {k}: dtype {o.dtype}, the reference's {w.dtype}")
            continue
        truth_k = truth[k] if truth is not None and is_float(o) else None
        t.compare(f"{label} output {k}".strip(), o, w, truth_k)


def require_jvp(case: Case) -> None:
    no_jvp = [f.__name__ for f in case.functions if f.jvp is torch.autograd.Function.jvp]
    if no_jvp or not case.functions:
        raise NotApplicable(f"no jvp ({', '.join(no_jvp) or 'no Function class known'})")


def tangents_of(floats: tuple, seed: int) -> tuple:
    return tuple(incoming(floats, seed + 7))


def want_jvp(case: Case, name: str) -> tuple[tuple, tuple | None]:
    """The reference's jvp (PyTorch's forward AD of plain ops), or fn's own eager forward AD without a reference;
    and its float64 truth."""
    key = ("jvp", name)
    if key not in case.cache:

        def compute(s):
            f, floats, _ = on_floats(case, case.want_fn(), s)
            return as_outputs(eager_jvp(floating_outputs(f), floats, tangents_of(floats, case.seed)))

        want = compute(case.samples[name])
        truth = None if case.dtype == torch.float64 else compute(to_float64(case.samples[name]))
        case.cache[key] = (want, truth)
    return case.cache[key]


def eager_jvp(f, primals: tuple, tangents: tuple):
    """Forward AD with dual tensors (torch.autograd.forward_ad): the tangents of f's outputs."""
    with fwAD.dual_level():
        out = f(*(fwAD.make_dual(p, t) for p, t in zip(primals, tangents, strict=True)))
        return tuple(fwAD.unpack_dual(o).tangent for o in as_outputs(out))


def detached(o):
    return o.detach() if isinstance(o, Tensor) else o
