"""The named checks of check_function: each compares one use of `fn` with the same use of the reference (or, with
no reference, with fn's own eager result) on every sample of one (dtype, device) Case, and records what it finds in
a Tally. Whether a check applies is declared in CHECKS, by the names of its needs (manualnet.crosscheck.needs); what
shows only once fn runs (its output count, a Dynamo refusal) is decided inside the check.

A gradient is the vector-Jacobian product with fixed random incoming gradients g_k, one per floating output:
d/dx sum_k <out_k, g_k>. Errors are measured against a float64 truth (manualnet.crosscheck.case: the rule).
"""

import re

import torch
from torch import Tensor
from torch.autograd.gradcheck import GradcheckError
from torch.utils._pytree import tree_leaves

from manualnet.crosscheck.case import (
    Case,
    Inputs,
    NotApplicable,
    Tally,
    as_outputs,
    floating_outputs,
    grads,
    incoming,
    is_float,
    leaves,
    on_floats,
    output_grads,
    probe,
    scalar_loss,
    strided,
    to_float64,
)
from manualnet.crosscheck.compare import compare
from manualnet.crosscheck.compile_checks import (
    check_compile,
    check_compile_double_backward,
    check_compile_dynamic,
    check_compile_func_grad,
    check_compile_jvp,
)
from manualnet.crosscheck.compile_fresh import check_compile_fresh_inputs
from manualnet.crosscheck.ddp_check import check_ddp
from manualnet.crosscheck.diagnosis import Symptom, first_line
from manualnet.crosscheck.expected import (
    compare_grads,
    compare_outputs,
    detached,
    tangents_of,
    want_grads,
    want_jvp,
    want_outputs,
)
from manualnet.crosscheck.incoming_checks import check_incoming_grad_inplace
from manualnet.crosscheck.needs import Check, no_vmap_rule
from manualnet.crosscheck.op_checks import (
    check_opcheck_aot_dispatch_dynamic,
    check_opcheck_autograd_registration,
    check_opcheck_faketensor,
    check_opcheck_schema,
)
from manualnet.crosscheck.saved import saved_for_backward
from manualnet.crosscheck.transform_checks import check_batched_fwd_grad, check_fwd_over_rev, check_vmap_vjp

FAST_MODE_NUMEL = 30  # gradcheck/gradgradcheck use fast_mode above this many differentiable input elements
JACOBIAN_NUMEL = 10**6  # jacrev/jacfwd skip samples whose Jacobian has more entries than this
SAVED_SLACK_BYTES = 64  # saved_tensors warns when fn saves more than the reference by over this (or 1% of inputs)


# ----------------------------------------------------------------------------------------------------------- checks


def check_forward(case: Case, t: Tally) -> None:
    """Outputs (values, dtypes, integer and Python outputs exactly) equal the reference's."""
    for name, s in case.samples.items():
        with torch.no_grad():
            got = as_outputs(case.call(case.fn, s))
        compare_outputs(t, name, got, *want_outputs(case, name))


def check_backward(case: Case, t: Tally) -> None:
    """Every gradient (inputs and parameters) equals the reference's."""
    for name, s in case.samples.items():
        compare_grads(t, name, grads(case, case.fn, s), *want_grads(case, name))


def _once_differentiable(e: Exception) -> bool:
    return "once_differentiable" in str(e)


def _finite_differences(case: Case, t: Tally, check) -> None:
    t.tolerance = "gradcheck's atol 1e-5, rtol 1e-3"
    smooth = {n: s for n, s in case.samples.items() if n not in case.kinks}
    checked = 0
    for name, s in smooth.items():
        if not any(s.get(k).numel() for k in s.keys()):
            t.notes.append(f"{name}: empty inputs, nothing to perturb")
            continue
        if check is torch.autograd.gradgradcheck and _once_differentiable_backward(case, s):
            raise NotApplicable("the backward is marked @once_differentiable (no double backward by design)")
        error = _run_gradcheck(case, case.fn, s, check)
        checked += 1
        if error is None:
            continue
        if _once_differentiable(error):
            raise NotApplicable("the backward is marked @once_differentiable")
        if not isinstance(error, GradcheckError):
            raise error  # fn raised: a failure whatever the reference does
        if case.reference is not None and isinstance(_run_gradcheck(case, case.reference, s, check), GradcheckError):
            raise NotApplicable("custom gradient: the reference is not the derivative of its forward either")
        t.fail(f"{name}: {_named(t, _message(error), s.keys())}", _symptom(t, check, error, s.keys()))
    if not checked:
        raise NotApplicable("every sample is empty")


def _once_differentiable_backward(case: Case, s: Inputs) -> bool:
    """A Function's backward is wrapped by @once_differentiable (seen on the class, or on the gradient's graph,
    which then ends in the error node it attaches)."""
    for cls in case.functions:
        wrapped = getattr(cls.backward, "__wrapped__", None)
        if wrapped is not None and cls.backward.__code__.co_filename.endswith(
            ("autograd/function.py", "autograd\\function.py")
        ):
            return True
    ins = leaves(s)
    outs = as_outputs(case.call(case.fn, ins))
    first = output_grads(outs, [ins.get(k) for k in ins.keys()], case.seed, create_graph=True)
    return any(g is not None and g.grad_fn is not None and "Error" in g.grad_fn.name() for g in first)


def _run_gradcheck(case: Case, f, s: Inputs, check) -> Exception | None:
    f_floats, floats, _ = on_floats(case, f, s)
    ins = tuple(x.detach().clone().requires_grad_(True) for x in floats)
    fast = sum(x.numel() for x in ins) > FAST_MODE_NUMEL
    try:
        check(floating_outputs(f_floats), ins, fast_mode=fast)
    except (GradcheckError, RuntimeError) as e:
        return e
    return None


def _named(t: Tally, text: str, keys: list) -> str:
    """gradcheck's first "input i" (numbered among the differentiable inputs) with the input's name: "input 2 (b)"."""

    def named(m: re.Match) -> str:
        i = int(m[1])
        return f"{m[0]} ({t.name(keys[i])})" if i < len(keys) else m[0]

    return re.sub(r"input (\d+)", named, text, count=1)


def _symptom(t: Tally, check, e: GradcheckError, keys: list) -> Symptom:
    """gradcheck's verdict: "d(name)" off for a Jacobian mismatch with respect to an input (numbered among the
    differentiable inputs); else its first line."""
    line = first_line(e).rstrip(",. ")
    match = re.match(r"Jacobian mismatch for output \d+ with respect to input (\d+)", line)
    if check is torch.autograd.gradcheck and match and int(match[1]) < len(keys):
        return Symptom("off", f"d({t.name(keys[int(match[1])])})")
    return Symptom("other", f"{check.__name__}: {_named(t, line, keys)}")


def _message(e: Exception) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return f"{type(e).__name__}: " + " ".join(lines[:6])[:600]


def check_gradcheck(case: Case, t: Tally) -> None:
    """torch.autograd.gradcheck: the backward against finite differences of the forward."""
    _finite_differences(case, t, torch.autograd.gradcheck)


def check_gradgradcheck(case: Case, t: Tally) -> None:
    """torch.autograd.gradgradcheck: double backward against finite differences of the backward."""
    _finite_differences(case, t, torch.autograd.gradgradcheck)


def check_input_subsets(case: Case, t: Tally) -> None:
    """Each input's gradient asked for alone, and all but one: equal to the full gradient. A backward that returns
    gradients for inputs that did not ask is legal but costly: a warning."""
    unasked = {}  # {Function name: positions of its inputs given a gradient they did not ask for}
    for name, s in case.samples.items():
        keys = s.keys()
        full = grads(case, case.fn, s)
        subsets = [[k] for k in keys] + ([[j for j in keys if j != k] for k in keys] if len(keys) > 2 else [])
        for wrt in subsets:
            with probe(case.functions) as calls:
                got = grads(case, case.fn, s, wrt=wrt)
            for k, g in got.items():
                t.compare_grad(f"{name} d({t.name(k)}) asked with {[t.name(j) for j in wrt]}", g, full[k])
            for fn_name, needs, returned in calls:
                extra = [i for i in returned if needs is not None and i < len(needs) and not needs[i]]
                unasked.setdefault(fn_name, set()).update(extra)
    for fn_name, extra in unasked.items():
        if extra:
            where = f"positions {sorted(extra)} of its forward"
            t.warnings.append(f"{fn_name}.backward returns gradients for inputs which did not ask ({where})")
    if not case.functions:
        t.notes.append("returned-None part not checked: no Function class known (pass functions=)")


def check_unused_outputs(case: Case, t: Tally) -> None:
    """Each floating output used alone (the others get None incoming gradients): gradients equal the reference's."""
    for name, s in case.samples.items():
        with torch.no_grad():
            floating = [k for k, o in enumerate(as_outputs(case.call(case.fn, s))) if is_float(o)]
        if len(floating) < 2:
            raise NotApplicable("one floating output")
        for k in floating:
            got = grads(case, case.fn, s, outputs=[k])
            compare_grads(t, f"{name} output {k} alone", got, *want_grads(case, name, outputs=[k]))


def check_noncontiguous(case: Case, t: Tally) -> None:
    """Non-contiguous inputs and non-contiguous incoming gradients: outputs and gradients equal the reference's
    on contiguous ones."""
    for name, s in case.samples.items():
        ins = s.put({k: strided(s.get(k).detach()).requires_grad_(True) for k in s.keys()})
        outs = as_outputs(case.call(case.fn, ins))
        compare_outputs(t, f"{name} non-contiguous", tuple(detached(o) for o in outs), *want_outputs(case, name))
        xs = [ins.get(k) for k in s.keys()]
        got = dict(zip(s.keys(), output_grads(outs, xs, case.seed, None, False), strict=True))
        compare_grads(t, f"{name} non-contiguous", got, *want_grads(case, name))


def check_same_tensor_twice(case: Case, t: Tally) -> None:
    """One tensor in two argument positions (pytorch #183604): gradients equal the reference's."""
    for name, s in case.samples.items():
        keys = s.keys()
        pairs = [(i, j) for i in keys for j in keys if i < j and s.get(i).shape == s.get(j).shape]
        if not pairs:
            continue
        i, j = pairs[0]

        def twice(f, inputs, i=i, j=j):
            ins = leaves(inputs, [i])
            return grads(case, f, inputs, wrt=[i], ins=ins.put({j: ins.get(i)}))[i]

        truth = twice(case.reference, to_float64(s)) if case.dtype != torch.float64 else None
        what = f"{t.name(i)} passed as {t.name(i)} and {t.name(j)}"
        t.compare_grad(
            f"{name}: {what}", twice(case.fn, s), twice(case.reference, s), truth, subject=f"d({t.name(i)}) with {what}"
        )
        return
    raise NotApplicable("no two floating inputs of the same shape")


def check_func_grad(case: Case, t: Tally) -> None:
    """torch.func.grad equals the reference's gradients."""
    for name, s in case.samples.items():
        loss, floats, keys = scalar_loss(case, case.fn, s)
        got = torch.func.grad(loss, argnums=tuple(range(len(floats))))(*floats)
        compare_grads(t, name, dict(zip(keys, got, strict=True)), *want_grads(case, name))


def check_func_vjp(case: Case, t: Tally) -> None:
    """torch.func.vjp: primal outputs and gradients equal the reference's (integer outputs left out)."""
    for name, s in case.samples.items():
        f_floats, floats, keys = on_floats(case, case.fn, s)
        outs, vjp_fn = torch.func.vjp(floating_outputs(f_floats), *floats)
        gs = [g for g in incoming(as_outputs(outs), case.seed)]
        got = vjp_fn(tuple(gs) if isinstance(outs, tuple) else gs[0])
        want, truth = want_outputs(case, name)
        pick = [k for k, w in enumerate(want) if is_float(w)]
        compare_outputs(
            t,
            f"{name} vjp",
            tuple(o.detach() for o in as_outputs(outs)),
            tuple(want[k] for k in pick),
            None if truth is None else tuple(truth[k] for k in pick),
        )
        # incoming() draws the g_k of the floating outputs in order, so these are the g_k of the full outputs
        compare_grads(t, name, dict(zip(keys, got, strict=True)), *want_grads(case, name))


def _jacobians(case: Case, name: str, s: Inputs, transform) -> tuple[list, list] | None:
    """(fn's Jacobian blocks by the transform, the reference's by autograd); None for a kink sample (the
    gradient checks hold the one-sided rule there) or a Jacobian over JACOBIAN_NUMEL entries."""
    if name in case.kinks:
        return None
    f_floats, floats, _ = on_floats(case, case.fn, s)
    with torch.no_grad():
        out_numel = sum(o.numel() for o in as_outputs(case.call(case.fn, s)) if is_float(o))
    if out_numel * sum(x.numel() for x in floats) > JACOBIAN_NUMEL:
        return None
    got = transform(floating_outputs(f_floats), argnums=tuple(range(len(floats))))(*floats)
    want_f, _, _ = on_floats(case, case.want_fn(), s)
    want = torch.autograd.functional.jacobian(floating_outputs(want_f), floats)
    return tree_leaves(got), tree_leaves(want)


def _blocks(t: Tally, keys: list, n: int) -> list[str]:
    """The labels of n Jacobian blocks, output-major as tree_leaves lists them: "of output o d(name)"."""
    if not keys or n % len(keys):
        return [f"block {k}" for k in range(n)]
    return [f"of output {k // len(keys)} d({t.name(keys[k % len(keys)])})" for k in range(n)]


def check_jacrev(case: Case, t: Tally) -> None:
    """torch.func.jacrev equals the reference's Jacobian (torch.autograd.functional.jacobian)."""
    for name, s in case.samples.items():
        pair = _jacobians(case, name, s, torch.func.jacrev)
        if pair is not None:
            for label, a, b in zip(_blocks(t, s.keys(), len(pair[0])), *pair, strict=True):
                t.compare(f"{name} Jacobian {label}", a, b)


def check_vmap_grad(case: Case, t: Tally) -> None:
    """vmap(grad) per-sample gradients equal a loop of the reference's gradients, one sample at a time, where dim 0
    of the batch_args inputs is a batch dimension of fn (n/a otherwise)."""
    for name, s in case.samples.items():
        batch = [i for i in case.batch_args if i < len(s.args) and isinstance(s.args[i], Tensor)]
        n = s.args[batch[0]].shape[0]
        if n == 0:
            continue
        rows = [s.put({("arg", i): s.args[i][k : k + 1] for i in batch}) for k in range(n)]
        _require_batched(case, rows[0])
        keys = s.keys()
        with torch.no_grad():
            gs = incoming(as_outputs(case.call(case.fn, rows[0])), case.seed)

        def sample_loss(floats, rest, s=s, keys=keys, gs=gs, batch=batch):
            full = s.put(dict(zip(keys, floats, strict=True)))
            full = full.put({("arg", i): x for i, x in rest.items()})
            full = full.put({("arg", i): full.args[i].unsqueeze(0) for i in batch})
            outs = as_outputs(case.call(case.fn, full))
            return sum((o * g).sum() for o, g in zip(outs, gs, strict=True) if g is not None)

        floats = tuple(s.get(k) for k in keys)
        rest = {i: s.args[i] for i in batch if ("arg", i) not in keys}
        in_dims = (tuple(0 if k[0] == "arg" and k[1] in batch else None for k in keys), {i: 0 for i in rest})
        try:
            per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=in_dims)(floats, rest)
        except RuntimeError as e:
            if "does not have vmap support" in str(e):  # a Function behind fn that claims no vmap support
                raise NotApplicable(f"no vmap rule: {str(e).splitlines()[0][:160]}") from e
            raise
        for k, row in enumerate(rows):
            want = grads(case, case.want_fn(), row)
            for key, g in zip(keys, per_sample, strict=True):
                w = want[key]
                w = w[0] if key[0] == "arg" and key[1] in batch and w is not None else w
                t.compare_grad(f"{name} sample {k} d({t.name(key)})", g[k], w)


def _require_batched(case: Case, row: Inputs) -> None:
    """n/a unless fn takes one row of the batch_args inputs (dim 0 is a batch dimension of fn)."""
    try:
        with torch.no_grad():
            case.call(case.fn, row)
    except Exception as e:
        raise NotApplicable(f"dim 0 of batch_args is not a batch dimension of fn: one row raised {e!r:.160}") from e


def check_jvp(case: Case, t: Tally) -> None:
    """torch.func.jvp and jacfwd equal the reference's forward AD, when the Function defines jvp."""
    for name, s in case.samples.items():
        f_floats, floats, _ = on_floats(case, case.fn, s)
        _, got = torch.func.jvp(floating_outputs(f_floats), floats, tangents_of(floats, case.seed))
        want, truth = want_jvp(case, name)
        compare_outputs(t, f"{name} jvp", as_outputs(got), want, truth)
        if no_vmap_rule(case):
            t.notes.append(f"jacfwd not run: {no_vmap_rule(case)}")
            continue
        pair = _jacobians(case, name, s, torch.func.jacfwd)
        if pair is not None:
            for label, a, b in zip(_blocks(t, s.keys(), len(pair[0])), *pair, strict=True):
                t.compare(f"{name} jacfwd {label}", a, b)


def check_checkpoint(case: Case, t: Tally) -> None:
    """Inside torch.utils.checkpoint.checkpoint(use_reentrant=False): outputs and gradients equal the reference's,
    and the forward really runs again during backward."""
    for name, s in case.samples.items():
        f_floats, floats, keys = on_floats(case, case.fn, leaves(s))
        runs = []

        def counted(*x, f=f_floats, runs=runs):
            runs.append(1)
            return f(*x)

        outs = as_outputs(torch.utils.checkpoint.checkpoint(counted, *floats, use_reentrant=False))
        if case.reference is not None:
            compare_outputs(t, f"{name} checkpointed", tuple(detached(o) for o in outs), *want_outputs(case, name))
        got = dict(zip(keys, output_grads(outs, list(floats), case.seed), strict=True))
        compare_grads(t, f"{name} checkpointed", got, *want_grads(case, name))
        # Non-reentrant checkpoint recomputes when backward unpacks a saved tensor: once, if fn saves any.
        expected = 2 if saved_for_backward(case.call, case.fn, leaves(s))[1].packed else 1
        if any(o.requires_grad for o in outs if isinstance(o, Tensor)) and len(runs) != expected:
            t.fail(f"{name}: the forward ran {len(runs)} times under checkpoint (expected {expected})")


# --------------------------------------------------------------------------------------------- autocast and the rest


def check_autocast(case: Case, t: Tally) -> None:
    """Under torch.autocast (bf16 on CPU; fp16 and bf16 on CUDA): output dtypes, values and gradients (backward
    outside and inside the autocast region) equal the reference's under the same autocast, against the float64
    truth. float64 inputs must be left alone, as torch's own ops do."""
    kinds = (torch.float16, torch.bfloat16) if case.device.type == "cuda" else (torch.bfloat16,)
    for low in kinds:
        floor_dtype = torch.float64 if case.dtype == torch.float64 else low
        for name, s in case.samples.items():
            label = f"{name} {str(low).removeprefix('torch.')}"
            out_truth = as_outputs(case.call(case.reference, to_float64(s))) if case.dtype != torch.float64 else None
            _, grad_truth = want_grads(case, name)  # the hull of one-sided gradients at a kink sample
            for inside in (False, True):
                ins, ref_ins = leaves(s), leaves(s)
                keys = ins.keys()
                xs, ref_xs = [ins.get(k) for k in keys], [ref_ins.get(k) for k in keys]
                with torch.autocast(case.device.type, dtype=low):
                    outs, refs = as_outputs(case.call(case.fn, ins)), as_outputs(case.call(case.reference, ref_ins))
                    if inside:
                        got, want = output_grads(outs, xs, case.seed), output_grads(refs, ref_xs, case.seed)
                if not inside:
                    got, want = output_grads(outs, xs, case.seed), output_grads(refs, ref_xs, case.seed)
                    for k, (o, r) in enumerate(zip(outs, refs, strict=True)):
                        if isinstance(o, Tensor) and isinstance(r, Tensor) and o.dtype != r.dtype:
                            t.fail(f"{label} output {k}: dtype {o.dtype}, the reference's {r.dtype}")
                        elif is_float(o):
                            truth_k = None if out_truth is None else out_truth[k].detach()
                            t.compare(f"{label} output {k}", o.detach(), r.detach(), truth_k, floor_dtype)
                where = "inside" if inside else "outside"
                for key, g, w in zip(keys, got, want, strict=True):
                    truth_k = None if grad_truth is None else grad_truth[key]
                    what = f"{label} backward {where} autocast d({t.name(key)})"
                    if g is None or w is None:
                        t.compare_grad(what, g, w)
                    else:
                        t.compare(what, g, w, truth_k, floor_dtype)


def check_saved_tensors(case: Case, t: Tally) -> None:
    """Bytes saved for backward beyond the inputs (saved_tensors_hooks): more than the reference's is a warning;
    an input (unless the Function marks it dirty) or a saved tensor modified in place after it was saved fails."""
    t.tolerance = "bytes <= reference's"
    for name, s in case.samples.items():
        got, changed = _saved(case, case.fn, s)
        t.failures += [f"{name}: {c}" for c in changed]
        if case.reference is None:
            t.notes.append(f"{name}: {got:,} bytes saved beyond the inputs (no reference to compare with)")
            continue
        want, _ = _saved(case, case.reference, s)
        t.notes.append(f"{name}: {got:,} bytes saved beyond the inputs, reference {want:,}")
        # A few scalars more (a shape, a scale factor) is noise: the warning is for a tensor's worth.
        slack = max(SAVED_SLACK_BYTES, sum(x.numel() * x.element_size() for x in s.tensors()) // 100)
        if got > want + slack:
            t.warnings.append(f"{name}: saves {got:,} bytes for backward, the reference {want:,}")


def _saved(case: Case, f, s: Inputs) -> tuple[int, list[str]]:
    """(bytes of the distinct storages f saves beyond its inputs', in-place changes seen by version counters)."""
    ins = leaves(s)
    held = ins.tensors()
    before = [x._version for x in held]
    outs, saved = saved_for_backward(case.call, f, ins)
    changed = []
    if not case.inplace:
        changed = [
            f"{'an input'} of shape {tuple(x.shape)} modified in place by the forward (version {v} -> {x._version})"
            for x, v in zip(held, before, strict=True)
            if x._version != v
        ]
    output_grads(as_outputs(outs), [ins.get(k) for k in ins.keys()], case.seed)
    return saved.nbytes(held=held), changed + saved.modified()


def check_deterministic(case: Case, t: Tally) -> None:
    """On CPU, two backward passes give bitwise-equal gradients."""
    t.tolerance = "bitwise"
    for name, s in case.samples.items():
        a, b = grads(case, case.fn, s), grads(case, case.fn, s)
        for k, x in a.items():
            y = b[k]
            if x is not None and y is not None and x.numel():
                d = compare("", x, y)
                t.measured = True
                t.max_abs, t.max_rel = max(t.max_abs, d.max_abs), max(t.max_rel, d.max_rel)
                if not d.bitwise:
                    t.fail(f"{name} d({t.name(k)}): two backward passes differ (max abs {d.max_abs:.2e})")


# The checks by name, in the report's order, each with what it needs (manualnet.crosscheck.needs.NEEDS): a check
# whose need is unmet is n/a with that need's reason, before it runs.
CHECKS = {
    "forward": Check(check_forward, needs=("reference",)),
    "backward": Check(check_backward, needs=("reference",)),
    "gradcheck": Check(check_gradcheck, needs=("float64", "smooth_sample")),
    "gradgradcheck": Check(check_gradgradcheck, needs=("float64", "smooth_sample")),
    "input_subsets": Check(check_input_subsets, needs=("two_inputs",)),
    "unused_outputs": Check(check_unused_outputs),
    "noncontiguous": Check(check_noncontiguous),
    "same_tensor_twice": Check(check_same_tensor_twice, needs=("reference",)),
    "incoming_grad_inplace": Check(check_incoming_grad_inplace),
    "func_grad": Check(check_func_grad, needs=("func",)),
    "func_vjp": Check(check_func_vjp, needs=("func",)),
    "jacrev": Check(check_jacrev, needs=("func",)),
    "vmap_grad": Check(check_vmap_grad, needs=("func", "vmap_rule", "batch_args")),
    "vmap_vjp": Check(check_vmap_vjp, needs=("func", "vmap_rule")),
    "jvp": Check(check_jvp, needs=("func", "jvp")),
    "fwd_over_rev": Check(check_fwd_over_rev, needs=("reference", "func", "jvp")),
    "batched_fwd_grad": Check(check_batched_fwd_grad, needs=("func", "jvp", "vmap_rule", "float64", "smooth_sample")),
    "checkpoint": Check(check_checkpoint),
    "compile": Check(check_compile),
    "compile_func_grad": Check(check_compile_func_grad, needs=("func",)),
    "compile_jvp": Check(check_compile_jvp, needs=("func", "jvp")),
    "compile_double_backward": Check(check_compile_double_backward),
    "compile_dynamic": Check(check_compile_dynamic, needs=("two_shapes",)),
    "compile_fresh_inputs": Check(check_compile_fresh_inputs),
    "autocast": Check(check_autocast, needs=("reference",)),
    "saved_tensors": Check(check_saved_tensors),
    "deterministic": Check(check_deterministic, needs=("cpu",)),
    "opcheck_schema": Check(check_opcheck_schema, needs=("op",)),
    "opcheck_autograd_registration": Check(check_opcheck_autograd_registration, needs=("op",)),
    "opcheck_faketensor": Check(check_opcheck_faketensor, needs=("op",)),
    "opcheck_aot_dispatch_dynamic": Check(check_opcheck_aot_dispatch_dynamic, needs=("op",)),
    "ddp": Check(check_ddp),
}
# quick: all but the checks that compile (seconds each): torch.compile's and opcheck's AOT autograd test.
COMPILING = [c for c in CHECKS if c.startswith("compile")] + ["opcheck_aot_dispatch_dynamic"]
OPT_IN = ("ddp",)  # run only when named in checks=
PROFILES = {
    "full": [c for c in CHECKS if c not in OPT_IN],
    "quick": [c for c in CHECKS if c not in OPT_IN and c not in COMPILING],
}
