"""Compiled-trace specialization, as PyTorch's optests check it: compile once, then run the compiled callable again on
fresh inputs of the same shapes. A value read at trace time (a scale computed under
torch.compiler.assume_constant_result, a Python number taken from a tensor and cached) is baked into the graph: the
first inputs agree and fresh ones do not."""

from dataclasses import replace

import torch

from manualnet.crosscheck.case import (
    Case,
    Inputs,
    NotApplicable,
    Sample,
    Tally,
    as_outputs,
    first_sample,
    leaves,
    output_grads,
)
from manualnet.crosscheck.compile_checks import _compile_check, _compiled_fn
from manualnet.crosscheck.expected import compare_grads, compare_outputs, detached, want_grads, want_outputs


def _layout(s: Inputs) -> list:
    return [(k, tuple(s.get(k).shape), s.get(k).dtype) for k in s.keys()]


def fresh_draw(case: Case) -> tuple[str, Inputs, Inputs]:
    """(the first sample's name, the first sample, the same sample from a second draw of make_inputs with another
    seed: fresh values, the same shapes). n/a where the second draw has other shapes or the same values."""
    name, s = first_sample(case)
    if case.make_inputs is None:
        raise NotApplicable("no make_inputs to draw fresh inputs from")
    generator = torch.Generator(device=case.device).manual_seed(case.seed + 1)
    got = case.make_inputs(case.dtype, case.device, generator)
    raw = got.get(name) if isinstance(got, dict) else got
    if isinstance(raw, Sample):
        fresh = replace(s, args=tuple(raw.args), kwargs=dict(raw.kwargs))
    elif isinstance(raw, tuple):
        fresh = replace(s, args=raw, kwargs={})
    else:
        raise NotApplicable(f"a second draw of make_inputs has no sample {name!r}")
    if _layout(fresh) != _layout(s):
        raise NotApplicable("a second draw of make_inputs gives other shapes or dtypes (seed + 1)")
    if all(torch.equal(fresh.get(k), s.get(k)) for k in s.keys()):
        raise NotApplicable("a second draw of make_inputs gives the same values: it ignores its generator")
    return name, s, fresh


def check_compile_fresh_inputs(case: Case, t: Tally) -> None:
    """torch.compile(fn) traced on the first sample, then run on a second draw of it (fresh values, same shapes,
    no recompile expected): outputs and gradients equal the reference's for both."""
    name, s, fresh = fresh_draw(case)

    def body():
        def build(f):
            return lambda args, kwargs, state: case.call_with(f, list(args), dict(kwargs), dict(state))

        ins = [leaves(s), leaves(fresh)]
        results, how, _ = _compiled_fn(case, build, [(i.args, i.kwargs, i.state) for i in ins], True)
        frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        t.notes.append(f"traced {how}" + (f"; recompiled for the fresh inputs ({frames} graphs)" if frames > 1 else ""))
        for label, c, i, outs in zip(("", " fresh"), (case, _alone(case, name, fresh)), ins, results, strict=True):
            outs = as_outputs(outs)
            if case.reference is not None:
                compare_outputs(t, f"{name}{label} compiled", tuple(detached(o) for o in outs), *want_outputs(c, name))
            got = dict(zip(i.keys(), output_grads(outs, [i.get(k) for k in i.keys()], case.seed), strict=True))
            compare_grads(t, f"{name}{label} compiled", got, *want_grads(c, name))

    _compile_check(t, body)


def _alone(case: Case, name: str, s: Inputs) -> Case:
    """The case with `s` as its only sample, under `name` (a kink sample stays one), with its own cache."""
    return replace(case, samples={name: s}, cache={})
