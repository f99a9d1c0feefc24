"""The incoming-gradient check: a backward must leave its incoming gradients (grad_output) as it got them. Autograd
hands the caller's tensor to the first backward as it is, and one tensor may feed several backward passes (an
output used twice, gradient accumulation, a loss scaler): a backward that writes into it corrupts them."""

import contextlib

import torch
from torch import Tensor

from manualnet.crosscheck.case import Case, NotApplicable, Tally, as_outputs, incoming, leaves
from manualnet.crosscheck.ops import function_name


@contextlib.contextmanager
def watch_incoming(functions: tuple[type, ...]):
    """Wrap each Function's backward (patched on the class, always restored) to record, as (class name, position,
    version before, version after), every incoming gradient it modified in place. A custom op's register_autograd
    backward is watched through the Function class it generates, by the op's name."""
    modified = []
    saved = []
    for cls in functions:
        attr = "vjp" if cls.vjp is not torch.autograd.Function.vjp else "backward"
        original, name = getattr(cls, attr), function_name(cls)
        saved.append((cls, attr, cls.__dict__.get(attr)))

        def watched(ctx, *gs, _original=original, _name=name):
            before = [(g._version, g.clone()) if isinstance(g, Tensor) else None for g in gs]
            out = _original(ctx, *gs)
            for i, (g, b) in enumerate(zip(gs, before, strict=True)):
                if b is not None and (g._version != b[0] or not _same(g, b[1])):
                    modified.append((_name, i, b[0], g._version))
            return out

        setattr(cls, attr, staticmethod(watched))
    try:
        yield modified
    finally:
        for cls, attr, own in saved:
            if own is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, own)


def check_incoming_grad_inplace(case: Case, t: Tally) -> None:
    """The incoming gradients passed to backward, and those each Function's backward receives, are unchanged after
    backward (version counters and values): a backward that writes into grad_output fails, naming the Function."""
    t.tolerance = "unchanged"
    for name, s in case.samples.items():
        ins = leaves(s)
        keys = ins.keys()
        with watch_incoming(case.functions) as modified:
            outs = as_outputs(case.call(case.fn, ins))
            gs = incoming(outs, case.seed)
            used = [k for k, g in enumerate(gs) if g is not None and outs[k].requires_grad]
            if not used:
                raise NotApplicable("no floating output depends on the inputs")
            kept = {k: (gs[k]._version, gs[k].clone()) for k in used}
            torch.autograd.grad(
                [outs[k] for k in used], [ins.get(k) for k in keys], [gs[k] for k in used], allow_unused=True
            )
        for fn_name, i, v0, v1 in dict.fromkeys(modified):
            t.fail(
                f"{name}: {fn_name}.backward modified its incoming gradient {i} (grad_output) in place "
                f"(version {v0} -> {v1})"
            )
        changed = [k for k, (v, g) in kept.items() if gs[k]._version != v or not _same(gs[k], g)]
        if changed and not modified:
            where = "a backward" if not case.functions else "a backward outside the known Functions"
            t.fail(
                f"{name}: {where} modified the incoming gradient of output(s) {changed} in place"
                + ("" if case.functions else " (pass functions= to name it)")
            )


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
