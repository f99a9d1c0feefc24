"""The named checks of manualnet.crosscheck.check_function: each compares one use of `fn` with the same use of
`reference` on every sample of one (dtype, device) Case, and records its errors in a Tally.

Errors are scale-relative, as in manualnet.crosscheck.compare: max |got - want| / max |want| per tensor. A gradient is
the vector-Jacobian product with fixed random incoming gradients g_k, one per floating output: d/dx sum_k <out_k, g_k>.
"""

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch._dynamo.comptime import comptime
from torch.utils._pytree import tree_leaves

from manualnet.crosscheck.compare import compare

# Max relative error per dtype (of the reference's largest magnitude): about 80 units of roundoff for float32
# (6e-8) and 450k for float64 (2.2e-16: sums over many terms, and references that round differently), 4 units for
# the 16-bit types (bf16 3.9e-3, fp16 4.9e-4), whose few bits leave little room between "same math" and "wrong".
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
FAST_MODE_NUMEL = 30  # gradcheck/gradgradcheck use fast_mode above this many differentiable input elements
JACOBIAN_NUMEL = 10**6  # jacrev/jacfwd skip samples whose Jacobian has more entries than this


class NotApplicable(Exception):
    """Raised by a check that does not apply to this Function, dtype or device; the message says why."""


@dataclass
class Case:
    """One column of the matrix: the callables and their samples in one dtype on one device."""

    fn: object
    reference: object
    samples: dict[str, tuple]
    dtype: torch.dtype
    device: torch.device
    functions: tuple[type, ...]  # the autograd.Function classes behind fn, probed when known
    kinks: frozenset[str]  # samples on a non-differentiable point: no finite differences there
    batch_args: tuple[int, ...]  # inputs whose dim 0 is the sample dimension (vmap_grad)
    seed: int


@dataclass
class Tally:
    """What one check found: the worst errors, the failures and the warnings."""

    rtol: float | None
    max_abs: float = 0.0
    max_rel: float = 0.0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def compare(self, what: str, got: Tensor | None, want: Tensor | None) -> bool:
        """Record |got - want| (None counts as zeros on one side, a failure if only got is missing)."""
        if got is None and want is None:
            return True
        if got is None:
            self.failures.append(f"{what}: no gradient (None), the reference has one")
            return False
        if want is None:
            want = torch.zeros_like(got)
        if got.shape != want.shape:
            self.failures.append(f"{what}: shape {tuple(got.shape)}, the reference's {tuple(want.shape)}")
            return False
        d = compare(what, got, want)
        max_abs, max_rel = (d.max_abs, d.max_rel) if math.isfinite(d.max_abs) else (math.inf, math.inf)
        self.max_abs, self.max_rel = max(self.max_abs, max_abs), max(self.max_rel, max_rel)
        if not max_rel <= self.rtol:  # NaN fails too
            self.failures.append(f"{what}: rel err {max_rel:.2e} > {self.rtol:g}")
            return False
        return True

    def fail(self, message: str) -> None:
        self.failures.append(message)


# ---------------------------------------------------------------------------------------------------------- helpers


def is_float(t: object) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point()


def as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def float_positions(sample: tuple) -> list[int]:
    """Positions of the differentiable (floating) inputs."""
    return [i for i, t in enumerate(sample) if is_float(t)]


def leaves(sample: tuple, wrt=None) -> tuple:
    """Fresh copies of the sample; floating ones (or those at positions `wrt`) require grad."""
    wrt = float_positions(sample) if wrt is None else wrt
    return tuple(t.detach().clone().requires_grad_(i in wrt) if is_float(t) else t for i, t in enumerate(sample))


def incoming(outs: tuple, seed: int, contiguous: bool = True) -> list[Tensor | None]:
    """The fixed random incoming gradient g_k of each floating output (None for the others)."""
    gen = torch.Generator().manual_seed(seed + 1)
    gs = []
    for o in outs:
        if not is_float(o):
            gs.append(None)
            continue
        g = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).to(o.device)
        gs.append(g if contiguous else strided(g))
    return gs


def strided(t: Tensor) -> Tensor:
    """The same values in a non-contiguous layout: the last two dims stored transposed (column-major), a vector
    as every other element of a buffer twice its size."""
    if t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return torch.stack((t, torch.zeros_like(t)), dim=-1)[..., 0] if t.dim() == 1 else t


def grads(f, sample: tuple, seed: int, wrt=None, outputs=None, ins=None, contiguous_g=True) -> list:
    """d/d(sample[i] for i in wrt) of sum_k <out_k, g_k> over the outputs numbered in `outputs` (default: all)."""
    wrt = float_positions(sample) if wrt is None else wrt
    ins = leaves(sample, wrt) if ins is None else ins
    return output_grads(as_tuple(f(*ins)), [ins[i] for i in wrt], seed, outputs, contiguous_g)


def output_grads(outs: tuple, xs: list, seed: int, outputs=None, contiguous_g=True) -> list:
    """d/d(xs) of sum_k <outs_k, g_k> over the outputs numbered in `outputs` (default: all)."""
    gs = incoming(outs, seed, contiguous_g)
    used = [k for k in range(len(outs)) if gs[k] is not None and outs[k].requires_grad]
    used = [k for k in used if outputs is None or k in outputs]
    if not used:
        return [None] * len(xs)
    return list(torch.autograd.grad([outs[k] for k in used], xs, [gs[k] for k in used], allow_unused=True))


def on_floats(f, sample: tuple):
    """(f as a function of the floating inputs only, with the rest of the sample fixed; those inputs; positions)."""
    pos = float_positions(sample)

    def of_floats(*floats):
        full = list(sample)
        for i, t in zip(pos, floats, strict=True):
            full[i] = t
        return f(*full)

    return of_floats, tuple(sample[i] for i in pos), pos


def scalar_loss(f, sample: tuple, seed: int):
    """(loss, floating inputs, incoming gradients): loss(*floats) = sum_k <f(sample with floats)_k, g_k>."""
    f_floats, floats, _ = on_floats(f, sample)
    with torch.no_grad():
        gs = incoming(as_tuple(f(*sample)), seed)

    def loss(*floats):
        return sum((o * g).sum() for o, g in zip(as_tuple(f_floats(*floats)), gs, strict=True) if g is not None)

    return loss, floats, gs


def compare_all(tally: Tally, prefix: str, got, want, names=None) -> None:
    got, want = list(got), list(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        tally.compare(f"{prefix} {names[k] if names else k}", a, b)


def input_names(sample: tuple, positions) -> list[str]:
    return [f"d(input {i})" for i in positions]


def old_style(functions: tuple[type, ...]) -> list[str]:
    """Names of the Functions written as forward(ctx, ...) (no setup_context): torch.func cannot transform them."""
    return [f.__name__ for f in functions if f.setup_context is torch.autograd.Function.setup_context]


def require_func_transforms(case: Case) -> None:
    old = old_style(case.functions)
    if old:
        raise NotApplicable(f"{', '.join(old)}: old-style forward(ctx, ...); torch.func needs forward + setup_context")


@contextlib.contextmanager
def probe(functions: tuple[type, ...]):
    """Wrap each Function's backward (patched on the class, always restored) to record its calls as
    (class name, needs_input_grad, positions of the gradients it returned); (class name, None, ()) when traced."""
    calls = []
    saved = []
    for cls in functions:
        attr = "vjp" if cls.vjp is not torch.autograd.Function.vjp else "backward"
        original = getattr(cls, attr)
        saved.append((cls, attr, cls.__dict__.get(attr)))

        def counted(ctx, *g, _original=original, _name=cls.__name__):
            out = _original(ctx, *g)

            def record_eager():
                returned = tuple(i for i, t in enumerate(as_tuple(out)) if t is not None)
                calls.append((_name, tuple(ctx.needs_input_grad), returned))

            # Under torch.compile the backward runs once, at trace time: comptime records that without adding a
            # side effect to the graph (a plain list append inside the traced backward would break the graph).
            comptime(lambda _: calls.append((_name, None, ())), record_eager)
            return out

        setattr(cls, attr, staticmethod(counted))
    try:
        yield calls
    finally:
        for cls, attr, own in saved:
            if own is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, own)


def backward_not_called(case: Case, calls: list, where: str) -> str | None:
    """A message when some probed Function's backward never ran (None when all ran, or none is known)."""
    missing = [f.__name__ for f in case.functions if not any(c[0] == f.__name__ for c in calls)]
    if not missing:
        return None
    return f"{', '.join(missing)}.backward never ran under {where}: autograd differentiated its forward instead"


def compiled(f):
    torch._dynamo.reset()  # a fresh trace, so that the probe sees the backward being traced (or not)
    return torch.compile(f)


def first_sample(case: Case) -> tuple[str, tuple]:
    return next(iter(case.samples.items()))


# ----------------------------------------------------------------------------------------------------------- checks


def check_forward(case: Case, t: Tally) -> None:
    """Outputs (values and dtypes) equal the reference's."""
    for name, s in case.samples.items():
        with torch.no_grad():
            outs, refs = as_tuple(case.fn(*s)), as_tuple(case.reference(*s))
        for k, (o, r) in enumerate(zip(outs, refs, strict=True)):
            if o.dtype != r.dtype:
                t.fail(f"{name} output {k}: dtype {o.dtype}, the reference's {r.dtype}")
            t.compare(f"{name} output {k}", o, r)


def check_backward(case: Case, t: Tally) -> None:
    """Every gradient equals the reference's."""
    for name, s in case.samples.items():
        names = input_names(s, float_positions(s))
        compare_all(t, name, grads(case.fn, s, case.seed), grads(case.reference, s, case.seed), names)


def _finite_differences(case: Case, t: Tally, check) -> None:
    t.rtol = None  # gradcheck's own tolerances; it reports no error size
    if case.dtype != torch.float64:
        raise NotApplicable("finite differences run in float64 only")
    smooth = {n: s for n, s in case.samples.items() if n not in case.kinks}
    if not smooth:
        raise NotApplicable("every sample is a kink (kinks=)")
    for name, s in smooth.items():
        ins = leaves(s)
        fast = sum(x.numel() for x in ins if is_float(x)) > FAST_MODE_NUMEL
        try:
            check(case.fn, ins, fast_mode=fast)
        except torch.autograd.gradcheck.GradcheckError as e:
            t.fail(f"{name}: {str(e).splitlines()[0]}")


# Tolerances of the checks that do not use RTOL, as the report states them.
TOLERANCE_TEXT = {
    "gradcheck": "gradcheck's atol 1e-5, rtol 1e-3",
    "gradgradcheck": "gradcheck's atol 1e-5, rtol 1e-3",
    "saved_tensors": "bytes <= reference's",
    "deterministic": "bitwise",
}


def check_gradcheck(case: Case, t: Tally) -> None:
    """torch.autograd.gradcheck: the backward against finite differences of the forward."""
    _finite_differences(case, t, torch.autograd.gradcheck)


def check_gradgradcheck(case: Case, t: Tally) -> None:
    """torch.autograd.gradgradcheck: double backward against finite differences of the backward."""
    _finite_differences(case, t, torch.autograd.gradgradcheck)


def check_input_subsets(case: Case, t: Tally) -> None:
    """Each input's gradient asked for alone, and all but one: equal to the full gradient; the backward returns
    None for every input that did not ask for a gradient."""
    for name, s in case.samples.items():
        pos = float_positions(s)
        if len(pos) < 2:
            raise NotApplicable("one differentiable input")
        full = dict(zip(pos, grads(case.fn, s, case.seed), strict=True))
        subsets = [[i] for i in pos] + ([[j for j in pos if j != i] for i in pos] if len(pos) > 2 else [])
        for wrt in subsets:
            with probe(case.functions) as calls:
                got = grads(case.fn, s, case.seed, wrt=wrt)
            for i, g in zip(wrt, got, strict=True):
                t.compare(f"{name} d(input {i}) asked with inputs {wrt}", g, full[i])
            for fn_name, needs, returned in calls:
                extra = [i for i in returned if needs is not None and not needs[i]]
                if extra:
                    t.fail(f"{name}: {fn_name}.backward returned gradients for inputs {extra}, which did not ask")
    if not case.functions:
        t.warnings.append("returned-None part not checked: no Function class known (pass functions=)")


def check_unused_outputs(case: Case, t: Tally) -> None:
    """Each output used alone (the others get None incoming gradients): gradients equal the reference's."""
    for name, s in case.samples.items():
        with torch.no_grad():
            n_out = sum(is_float(o) for o in as_tuple(case.fn(*s)))
        if n_out < 2:
            raise NotApplicable("one floating output")
        for k in range(n_out):
            got = grads(case.fn, s, case.seed, outputs=[k])
            compare_all(t, f"{name} output {k} alone", got, grads(case.reference, s, case.seed, outputs=[k]))


def check_noncontiguous(case: Case, t: Tally) -> None:
    """Non-contiguous inputs and non-contiguous incoming gradients: gradients equal the reference's."""
    for name, s in case.samples.items():
        ins = tuple(strided(x.detach()).requires_grad_(True) if is_float(x) else x for x in s)
        got = grads(case.fn, s, case.seed, ins=ins, contiguous_g=False)
        compare_all(t, f"{name} non-contiguous", got, grads(case.reference, s, case.seed))


def check_same_tensor_twice(case: Case, t: Tally) -> None:
    """One tensor in two argument positions (pytorch #183604), eager and compiled: gradients equal the reference's."""
    for name, s in case.samples.items():
        pos = float_positions(s)
        pairs = [(i, j) for i in pos for j in pos if i < j and s[i].shape == s[j].shape]
        if not pairs:
            continue
        i, j = pairs[0]
        for label, f in (("eager", case.fn), ("compiled", compiled(case.fn))):
            ins = list(leaves(s))
            ins[j] = ins[i]
            got = grads(f, s, case.seed, wrt=[i], ins=tuple(ins))
            ref_ins = list(leaves(s))
            ref_ins[j] = ref_ins[i]
            want = grads(case.reference, s, case.seed, wrt=[i], ins=tuple(ref_ins))
            t.compare(f"{name} {label}: input {i} passed as {i} and {j}", got[0], want[0])
        return
    raise NotApplicable("no two floating inputs of the same shape")


def check_func_grad(case: Case, t: Tally) -> None:
    """torch.func.grad equals the reference's gradients."""
    require_func_transforms(case)
    for name, s in case.samples.items():
        loss, floats, _ = scalar_loss(case.fn, s, case.seed)
        got = torch.func.grad(loss, argnums=tuple(range(len(floats))))(*floats)
        compare_all(t, name, got, grads(case.reference, s, case.seed), input_names(s, float_positions(s)))


def check_func_vjp(case: Case, t: Tally) -> None:
    """torch.func.vjp: primal outputs and gradients equal the reference's."""
    require_func_transforms(case)
    for name, s in case.samples.items():
        _, floats, gs = scalar_loss(case.fn, s, case.seed)
        outs, vjp_fn = torch.func.vjp(on_floats(case.fn, s)[0], *floats)
        got = vjp_fn(tuple(gs) if isinstance(outs, tuple) else gs[0])
        with torch.no_grad():
            compare_all(t, f"{name} output", as_tuple(outs), as_tuple(case.reference(*s)))
        compare_all(t, name, got, grads(case.reference, s, case.seed), input_names(s, float_positions(s)))


def _jacobians(case: Case, s: tuple, transform) -> tuple[list, list] | None:
    f_floats, floats, _ = on_floats(case.fn, s)
    with torch.no_grad():
        out_numel = sum(o.numel() for o in as_tuple(case.fn(*s)) if is_float(o))
    if out_numel * sum(x.numel() for x in floats) > JACOBIAN_NUMEL:
        return None
    got = transform(f_floats, argnums=tuple(range(len(floats))))(*floats)
    want = torch.autograd.functional.jacobian(on_floats(case.reference, s)[0], floats)
    return tree_leaves(got), tree_leaves(want)


def check_jacrev(case: Case, t: Tally) -> None:
    """torch.func.jacrev equals the reference's Jacobian (torch.autograd.functional.jacobian)."""
    require_func_transforms(case)
    for name, s in case.samples.items():
        pair = _jacobians(case, s, torch.func.jacrev)
        if pair is not None:
            compare_all(t, f"{name} Jacobian block", *pair)


def check_vmap_grad(case: Case, t: Tally) -> None:
    """vmap(grad) per-sample gradients equal a loop of the reference's gradients, one sample at a time."""
    require_func_transforms(case)
    no_rule = [
        f.__name__ for f in case.functions if not f.generate_vmap_rule and f.vmap is torch.autograd.Function.vmap
    ]
    if no_rule:
        raise NotApplicable(f"no vmap rule ({', '.join(no_rule)}: set generate_vmap_rule = True or define vmap)")
    for name, s in case.samples.items():
        pos = float_positions(s)
        n = s[case.batch_args[0]].shape[0]
        one = tuple(x[:1] if i in case.batch_args else x for i, x in enumerate(s))
        with torch.no_grad():
            gs = incoming(as_tuple(case.fn(*one)), case.seed)

        def sample_loss(floats, rest, pos=pos, gs=gs, s=s):
            full = list(s)
            for i, x in zip(pos, floats, strict=True):
                full[i] = x
            for i, x in rest.items():
                full[i] = x
            full = [x.unsqueeze(0) if i in case.batch_args else x for i, x in enumerate(full)]
            outs = as_tuple(case.fn(*full))
            return sum((o * g).sum() for o, g in zip(outs, gs, strict=True) if g is not None)

        floats = tuple(s[i] for i in pos)
        rest = {i: s[i] for i in case.batch_args if i not in pos}
        in_dims = (tuple(0 if i in case.batch_args else None for i in pos), {i: 0 for i in rest})
        per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=in_dims)(floats, rest)
        for k in range(n):
            sk = tuple(x[k : k + 1] if i in case.batch_args else x for i, x in enumerate(s))
            want = grads(case.reference, sk, case.seed)
            want = [w[0] if i in case.batch_args else w for i, w in zip(pos, want, strict=True)]
            compare_all(t, f"{name} sample {k}", [g[k] for g in per_sample], want, input_names(s, pos))


def check_jvp(case: Case, t: Tally) -> None:
    """torch.func.jvp (eager, and compiled: pytorch #192985) and jacfwd equal the reference's, when the Function
    defines jvp."""
    require_func_transforms(case)
    no_jvp = [f.__name__ for f in case.functions if f.jvp is torch.autograd.Function.jvp]
    if no_jvp or not case.functions:
        raise NotApplicable(f"no jvp ({', '.join(no_jvp) or 'no Function class known'})")
    for name, s in case.samples.items():
        f_floats, floats, _ = on_floats(case.fn, s)
        tangents = tuple(incoming(floats, case.seed + 7))
        _, got = torch.func.jvp(f_floats, floats, tangents)
        _, want = torch.func.jvp(on_floats(case.reference, s)[0], floats, tangents)
        compare_all(t, f"{name} jvp output", as_tuple(got), as_tuple(want))
        if name == first_sample(case)[0]:  # compiled on the first sample only, as the compile checks
            got = compiled(lambda *fl, f=f_floats, tg=tangents: torch.func.jvp(f, fl, tg)[1])(*floats)
            if not all(
                t.compare(f"{name} compiled jvp output", a, b)
                for a, b in zip(as_tuple(got), as_tuple(want), strict=True)
            ):
                t.fail(f"{name}: compiled jvp differs from eager: the custom jvp was dropped (pytorch #192985)")
        pair = _jacobians(case, s, torch.func.jacfwd)
        if pair is not None:
            compare_all(t, f"{name} jacfwd block", *pair)


def check_compile(case: Case, t: Tally) -> None:
    """torch.compile(fn): forward and backward equal the reference's (first sample only: a shape is a recompile),
    and the Function's own backward ran."""
    name, s = first_sample(case)
    with probe(case.functions) as calls:
        f = compiled(case.fn)
        with torch.no_grad():
            compare_all(t, f"{name} output", as_tuple(f(*s)), as_tuple(case.reference(*s)))
        got = grads(f, s, case.seed)
    ok = not t.failures
    compare_all(t, name, got, grads(case.reference, s, case.seed), input_names(s, float_positions(s)))
    _judge_probe(case, t, calls, "torch.compile", ok and not t.failures)


def check_compile_func_grad(case: Case, t: Tally) -> None:
    """torch.compile(torch.func.grad(...)) equals the reference's gradients (pytorch #193279), first sample only;
    the probe tells "wrong" from "right, but your backward never ran"."""
    require_func_transforms(case)
    name, s = first_sample(case)
    loss, floats, _ = scalar_loss(case.fn, s, case.seed)
    with probe(case.functions) as calls:
        got = compiled(torch.func.grad(loss, argnums=tuple(range(len(floats)))))(*floats)
    compare_all(t, name, got, grads(case.reference, s, case.seed), input_names(s, float_positions(s)))
    _judge_probe(case, t, calls, "compile(func.grad)", not t.failures)


def _judge_probe(case: Case, t: Tally, calls: list, where: str, values_agree: bool) -> None:
    missing = backward_not_called(case, calls, where)
    if missing is None:
        return
    if values_agree:
        t.warnings.append(f"{missing} (pytorch #193279); the values agree only because it equals that")
    else:
        t.fail(f"{missing} (pytorch #193279)")


def check_autocast(case: Case, t: Tally) -> None:
    """Under torch.autocast (bf16 on CPU; fp16 and bf16 on CUDA): output dtypes, values and gradients (backward
    outside and inside the autocast region) equal the reference's under the same autocast. float64 inputs must be
    left alone, as torch's own ops do."""
    kinds = (torch.float16, torch.bfloat16) if case.device.type == "cuda" else (torch.bfloat16,)
    for low in kinds:
        t.rtol = RTOL[case.dtype] if case.dtype == torch.float64 else max(RTOL[low], RTOL.get(case.dtype, 0.0))
        for name, s in case.samples.items():
            label = f"{name} {str(low).removeprefix('torch.')}"
            for inside in (False, True):
                ins, ref_ins = leaves(s), leaves(s)
                xs, ref_xs = [ins[i] for i in float_positions(s)], [ref_ins[i] for i in float_positions(s)]
                with torch.autocast(case.device.type, dtype=low):
                    outs, refs = as_tuple(case.fn(*ins)), as_tuple(case.reference(*ref_ins))
                    if inside:
                        got, want = output_grads(outs, xs, case.seed), output_grads(refs, ref_xs, case.seed)
                if not inside:
                    got, want = output_grads(outs, xs, case.seed), output_grads(refs, ref_xs, case.seed)
                    for k, (o, r) in enumerate(zip(outs, refs, strict=True)):
                        if o.dtype != r.dtype:
                            t.fail(f"{label} output {k}: dtype {o.dtype}, the reference's {r.dtype}")
                    compare_all(t, f"{label} output", outs, refs)
                where = "inside" if inside else "outside"
                compare_all(t, f"{label} backward {where} autocast", got, want, input_names(s, float_positions(s)))


def _saved(f, s: tuple, seed: int) -> tuple[int, list[str]]:
    """(bytes of the distinct storages f saves for backward beyond its inputs', in-place changes seen by version
    counters)."""
    ins = leaves(s)
    before = [x._version for x in ins if isinstance(x, Tensor)]
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda x: packed.append((x, x._version)) or x, lambda x: x):
        outs = as_tuple(f(*ins))
    changed = [
        f"input {i} modified in place by the forward (version {v} -> {x._version})"
        for i, (x, v) in enumerate(zip((x for x in ins if isinstance(x, Tensor)), before, strict=True))
        if x._version != v
    ]
    output_grads(outs, [x for x in ins if is_float(x)], seed)
    changed += [
        f"a saved {tuple(x.shape)} tensor modified in place after it was saved (version {v} -> {x._version})"
        for x, v in packed
        if x._version != v
    ]
    # The inputs are held by the caller anyway: what saving costs is the storages beyond them.
    held = {x.untyped_storage().data_ptr() for x in ins if isinstance(x, Tensor)}
    storages = {x.untyped_storage().data_ptr(): x.untyped_storage().nbytes() for x, _ in packed}
    return sum(n for ptr, n in storages.items() if ptr not in held), changed


def check_saved_tensors(case: Case, t: Tally) -> None:
    """Bytes saved for backward beyond the inputs (saved_tensors_hooks) at most the reference's; no input, and no
    saved tensor, modified in place after it was saved (version counters)."""
    t.rtol = None
    for name, s in case.samples.items():
        got, changed = _saved(case.fn, s, case.seed)
        want, ref_changed = _saved(case.reference, s, case.seed)
        t.failures += [f"{name}: {c}" for c in changed if c not in ref_changed]
        t.notes.append(f"{name}: {got:,} bytes saved beyond the inputs, reference {want:,}")
        if got > want:
            t.fail(f"{name}: saves {got:,} bytes for backward, the reference {want:,}")


def check_deterministic(case: Case, t: Tally) -> None:
    """On CPU, two backward passes give bitwise-equal gradients."""
    if case.device.type != "cpu":
        raise NotApplicable("CPU only (GPU kernels may accumulate in any order)")
    t.rtol = 0.0
    for name, s in case.samples.items():
        a, b = grads(case.fn, s, case.seed), grads(case.fn, s, case.seed)
        for i, x, y in zip(float_positions(s), a, b, strict=True):
            if x is not None:
                d = compare("", x, y)
                t.max_abs, t.max_rel = max(t.max_abs, d.max_abs), max(t.max_rel, d.max_rel)
                if not d.bitwise:
                    t.fail(f"{name} d(input {i}): two backward passes differ (max abs {d.max_abs:.2e})")


# The checks by name, in the report's order.
CHECKS = {
    "forward": check_forward,
    "backward": check_backward,
    "gradcheck": check_gradcheck,
    "gradgradcheck": check_gradgradcheck,
    "input_subsets": check_input_subsets,
    "unused_outputs": check_unused_outputs,
    "noncontiguous": check_noncontiguous,
    "same_tensor_twice": check_same_tensor_twice,
    "func_grad": check_func_grad,
    "func_vjp": check_func_vjp,
    "jacrev": check_jacrev,
    "vmap_grad": check_vmap_grad,
    "jvp": check_jvp,
    "compile": check_compile,
    "compile_func_grad": check_compile_func_grad,
    "autocast": check_autocast,
    "saved_tensors": check_saved_tensors,
    "deterministic": check_deterministic,
}
