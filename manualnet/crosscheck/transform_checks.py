"""The composed-transform checks, as functorch's own tests compose them: vmap over vjp (a batch of incoming
gradients), forward over reverse (the jvp of a vjp, a Hessian-vector product), and gradcheck's batched forward
gradients (vmap over forward AD, one input's tangent at a time)."""

import torch
from torch.autograd.gradcheck import GradcheckError

from manualnet.crosscheck.case import (
    Case,
    Inputs,
    NotApplicable,
    Tally,
    as_outputs,
    floating_outputs,
    incoming,
    leaves,
    on_floats,
    output_grads,
)
from manualnet.crosscheck.expected import tangents_of, truth_of

BATCH = 3  # incoming gradients per vmap_vjp batch


def _vjp_seed(case: Case, b: int) -> int:
    return case.seed + 11 + b  # the b-th incoming gradient of the batch (b = 0 is not the other checks' g)


def _ref_vjp(case: Case, f, s: Inputs, seed: int) -> dict:
    """{key: d/d(input) of sum_k <f(s)_k, g_k>} with the g_k drawn from `seed`, by plain autograd."""
    ins = leaves(s)
    keys = ins.keys()
    outs = as_outputs(case.call(f, ins))
    return dict(zip(keys, output_grads(outs, [ins.get(k) for k in keys], seed), strict=True))


def check_vmap_vjp(case: Case, t: Tally) -> None:
    """vmap over the vjp function of torch.func.vjp, on a batch of incoming gradients: each row equals the
    reference's gradient for that incoming gradient, one at a time."""
    for name, s in case.samples.items():
        f_floats, floats, keys = on_floats(case, case.fn, s)
        outs, vjp_fn = torch.func.vjp(floating_outputs(f_floats), *floats)
        rows = [[g for g in incoming(as_outputs(outs), _vjp_seed(case, b)) if g is not None] for b in range(BATCH)]
        batch = tuple(torch.stack(gs) for gs in zip(*rows, strict=True))
        got = torch.func.vmap(vjp_fn)(batch if isinstance(outs, tuple) else batch[0])
        for b in range(BATCH):
            seed = _vjp_seed(case, b)
            want = _ref_vjp(case, case.want_fn(), s, seed)
            truth = truth_of(case, name, lambda s64, seed=seed: _ref_vjp(case, case.want_fn(), s64, seed))
            for key, g in zip(keys, got, strict=True):
                t.compare_grad(
                    f"{name} incoming gradient {b} d({t.name(key)})",
                    g[b],
                    want[key],
                    None if truth is None else truth[key],
                )


def _fwd_over_rev(case: Case, f, s: Inputs) -> dict:
    """{key: torch.func.jvp of (x -> the vjp of f at x with fixed g_k), tangents u}: H u, the Hessian of
    sum_k <f_k, g_k> times u."""
    f_floats, floats, keys = on_floats(case, f, s)
    f_out = floating_outputs(f_floats)
    with torch.no_grad():
        gs = [g for g in incoming(as_outputs(case.call(f, s)), case.seed) if g is not None]

    def vjp_at(*x):
        outs, vjp_fn = torch.func.vjp(f_out, *x)
        return vjp_fn(tuple(gs) if isinstance(outs, tuple) else gs[0])

    _, hvp = torch.func.jvp(vjp_at, floats, tangents_of(floats, case.seed))
    return dict(zip(keys, hvp, strict=True))


def check_fwd_over_rev(case: Case, t: Tally) -> None:
    """Forward over reverse: torch.func.jvp of torch.func.vjp (a Hessian-vector product) equals the reference's."""
    for name, s in case.samples.items():
        got = _fwd_over_rev(case, case.fn, s)
        want = _fwd_over_rev(case, case.reference, s)
        truth = truth_of(case, name, lambda s64: _fwd_over_rev(case, case.reference, s64))
        for key, g in got.items():
            t.compare_grad(f"{name} jvp of vjp d({t.name(key)})", g, want[key], None if truth is None else truth[key])


def check_batched_fwd_grad(case: Case, t: Tally) -> None:
    """gradcheck's forward-AD checks (the jvp against finite differences, with zero and absent tangents), and its
    batched forward gradients with torch.func (gradcheck's legacy vmap ignores a Function's vmap rule): vmap over
    jvp in one input at a time, on a batch of tangents, against one tangent at a time."""
    smooth = {n: s for n, s in case.samples.items() if n not in case.kinks}
    for name, s in smooth.items():
        if not any(s.get(k).numel() for k in s.keys()):
            t.notes.append(f"{name}: empty inputs, nothing to perturb")
            continue
        error = _forward_gradcheck(case.fn, case, s)
        if error is not None:
            if case.reference is not None and _forward_gradcheck(case.reference, case, s) is not None:
                raise NotApplicable("custom gradient: the reference's forward AD fails gradcheck too")
            lines = [line for line in str(error).strip().splitlines() if line.strip()]
            t.fail(f"{name}: {type(error).__name__}: " + " ".join(lines[:4])[:500])
        _batched_tangents(case, t, name, s)


def _forward_gradcheck(f, case: Case, s: Inputs) -> Exception | None:
    f_floats, floats, _ = on_floats(case, f, s)
    ins = tuple(x.detach().clone().requires_grad_(True) for x in floats)
    try:
        torch.autograd.gradcheck(
            floating_outputs(f_floats),
            ins,
            check_forward_ad=True,
            check_backward_ad=False,
            fast_mode=True,  # the jvp check compares every tangent with the reference already
        )
    except (GradcheckError, RuntimeError) as e:
        return e
    return None


def _batched_tangents(case: Case, t: Tally, name: str, s: Inputs) -> None:
    """For each input, torch.func.jvp in that input alone (the others constants: no tangent) under torch.func.vmap
    over a batch of BATCH tangents equals the same jvp for one tangent at a time."""
    f_floats, floats, keys = on_floats(case, case.fn, s)
    f_out = floating_outputs(f_floats)
    for i, key in enumerate(keys):

        def in_one(xi, i=i):
            return f_out(*floats[:i], xi, *floats[i + 1 :])

        def tangent_out(tangent, i=i):
            return as_outputs(torch.func.jvp(in_one, (floats[i],), (tangent,))[1])

        gen = torch.Generator(device=case.device).manual_seed(case.seed + 5 + i)
        x = floats[i].detach()
        tangents = torch.randn((BATCH, *x.shape), generator=gen, dtype=x.dtype, device=x.device)
        batched = torch.func.vmap(tangent_out)(tangents)
        for b in range(BATCH):
            for k, (got, want) in enumerate(zip(batched, tangent_out(tangents[b]), strict=True)):
                t.compare(f"{name} tangent {b} of {t.name(key)}: output {k}", got[b], want)
