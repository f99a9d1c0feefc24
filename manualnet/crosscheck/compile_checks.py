"""The compile checks: torch.compile of fn, of torch.func.grad and jvp over it, double backward through it and
dynamic shapes. Each counts only when Dynamo traced the Function (the graph captured, no graph break, the Function
in it): otherwise a warning with Dynamo's reason, never a pass. fn is traced as given and, failing that, as
Cls.apply called from this file's frame, as a model's own code calls it."""

import torch

from manualnet.crosscheck.case import (
    Case,
    Inputs,
    NotApplicable,
    Tally,
    as_outputs,
    compile_traced,
    first_sample,
    floating_outputs,
    incoming,
    leaves,
    on_floats,
    output_grads,
    probe,
    scalar_loss,
    to_float64,
)
from manualnet.crosscheck.expected import (
    compare_grads,
    compare_outputs,
    detached,
    tangents_of,
    want_grads,
    want_jvp,
    want_outputs,
)
from manualnet.crosscheck.needs import first_of_each_shape
from manualnet.crosscheck.ops import function_name, ops_behind


def _owner(case: Case):
    owner = getattr(case.fn, "__self__", None)
    return owner if isinstance(owner, type) and issubclass(owner, torch.autograd.Function) else None


def _compiled_fn(
    case: Case, build, arg_lists: list, check_function_in_graph: bool, dynamic: bool | None = None, calls=None
):
    """([compiled(*args) for args in arg_lists], how fn was traced, compiled), compiling build(f) for f = fn as
    given and, when Dynamo does not trace it there, for Cls.apply called from this frame (a model's own code).
    Raises _NotCompiled with Dynamo's reasons when neither traced."""
    candidates = [("as given", case.fn)]
    owner = _owner(case)
    if owner is not None:
        candidates.append(("as Cls.apply from the calling frame", lambda *a, **k: owner.apply(*a, **k)))
    why = []
    ops = ops_behind(case.fn, case.functions)
    for how, f in candidates:
        if calls is not None:
            calls.clear()  # the probe records this attempt alone (an eager run of the last one called backward)
        run, trace = compile_traced(build(f), dynamic=dynamic)
        try:
            results = [run(*args) for args in arg_lists]
        except torch._dynamo.exc.TorchDynamoException as e:  # Dynamo's own failure, not fn's
            why.append(f"{how}: Dynamo raised {_reason(e)}")
            continue
        if not trace.breaks and trace.graphs and (trace.holds_function(ops) or not check_function_in_graph):
            return results, how, run
        why.append(f"{how}: {trace.why_not(ops)}")
    raise _NotCompiled("; ".join(why))


def _reason(e: Exception) -> str:
    """Dynamo's exception in a line; a backend's failure by the exception it wraps (the line above it says only
    "backend='backend' raised:")."""
    inner = getattr(e, "inner_exception", None)
    shown = f"{type(e).__name__}: " + (f"{type(inner).__name__}: {inner}" if inner is not None else str(e))
    return shown.strip().splitlines()[0][:200]


class _NotCompiled(Exception):
    pass


# Dynamo's reasons that hold for every Function of a kind, not for this one's code: the check is n/a, not a warning.
# Dynamo refuses any Function that defines jvp; a region under torch.compiler.disable runs eagerly by its author's
# choice.
BY_DESIGN = ("Unsupported custom jvp", "torch.compiler.disable")


def _compile_check(t: Tally, body) -> None:
    """Run body; when Dynamo traced nothing, the check is n/a where the last reason is one of BY_DESIGN, else a
    warning with Dynamo's reason: never a pass."""
    try:
        body()
    except _NotCompiled as e:
        last = str(e).split("; ")[-1]  # the last way tried: as Cls.apply where fn is MyFn.apply
        if any(m in last for m in BY_DESIGN):
            raise NotApplicable(f"not traceable by Dynamo, by design: {e}") from e
        t.warnings.append(f"not compiled, nothing checked: {e}")


def _judge_probe(case: Case, t: Tally, calls: list, where: str) -> None:
    missing = [function_name(f) for f in case.functions if not any(c[0] == function_name(f) for c in calls)]
    if not missing:
        return
    message = f"{', '.join(missing)}.backward never ran under {where}: autograd differentiated its forward instead"
    if t.failures:
        t.fail(f"{message} (pytorch #193279)")
    else:
        keep = KEEP_BACKWARD.replace("MyFn", missing[0])
        t.warnings.append(f"{message} (pytorch #193279); the values agree only because it equals that. {keep}")


# What keeps a custom backward under compile(func.grad) (pytorch #193279): Dynamo inlines a Function whose inputs are
# the transform's own inputs; a view of them is an intermediate, and the Function stays in the graph, backward and all.
KEEP_BACKWARD = (
    "To keep it: while compiling, pass views of the inputs to the Function "
    "(`if torch.compiler.is_compiling(): x = x.view_as(x)` before `MyFn.apply(x)`), "
    "or compile the function and not the transform (`torch.func.grad(torch.compile(f))`)"
)


def _compiled_first_sample(case: Case):
    """(torch.compile(fn) over the first sample's differentiable inputs, how it was traced): compiled once per case
    and shared by the compile checks that call fn itself."""
    key = "compiled first sample"
    if key not in case.cache:
        _, s = first_sample(case)
        ins = leaves(s)
        build = lambda f: on_floats(case, f, ins)[0]  # noqa: E731
        try:
            _, how, run = _compiled_fn(case, build, [on_floats(case, case.fn, ins)[1]], True)
            case.cache[key] = (run, how, None)
        except _NotCompiled as e:
            case.cache[key] = (None, None, e)
    run, how, error = case.cache[key]
    if error is not None:
        raise error
    return run, how


def check_compile(case: Case, t: Tally) -> None:
    """torch.compile(fn) traced by Dynamo with the Function in the graph (autograd_function_apply holds its own
    backward): forward and backward equal the reference's, first sample."""
    name, s = first_sample(case)
    ins = leaves(s)

    def body():
        run, how = _compiled_first_sample(case)
        outs = as_outputs(run(*on_floats(case, case.fn, ins)[1]))
        got = dict(zip(ins.keys(), output_grads(outs, [ins.get(k) for k in ins.keys()], case.seed), strict=True))
        t.notes.append(f"traced {how}")
        if case.reference is not None:
            compare_outputs(t, f"{name} compiled", tuple(detached(o) for o in outs), *want_outputs(case, name))
        compare_grads(t, f"{name} compiled", got, *want_grads(case, name))

    _compile_check(t, body)


def check_compile_func_grad(case: Case, t: Tally) -> None:
    """torch.compile(torch.func.grad(...)) equals the reference's gradients (pytorch #193279), first sample; the
    probe tells "wrong" from "right, but your backward never ran"."""
    name, s = first_sample(case)

    def body():
        with probe(case.functions) as calls:

            def build(f):
                loss, floats, _ = scalar_loss(case, f, s)
                return torch.func.grad(loss, argnums=tuple(range(len(floats))))

            (got,), how, _ = _compiled_fn(case, build, [on_floats(case, case.fn, s)[1]], False, calls=calls)
        t.notes.append(f"traced {how}")
        compare_grads(t, f"{name} compile(func.grad)", dict(zip(s.keys(), got, strict=True)), *want_grads(case, name))
        _judge_probe(case, t, calls, "compile(func.grad)")

    _compile_check(t, body)


def check_compile_jvp(case: Case, t: Tally) -> None:
    """torch.compile(torch.func.jvp(...)) equals the reference's forward AD (pytorch #192985), first sample."""
    name, s = first_sample(case)

    def body():
        floats = on_floats(case, case.fn, s)[1]
        tangents = tangents_of(floats, case.seed)

        def build(f):
            f_floats = floating_outputs(on_floats(case, f, s)[0])
            return lambda *x: torch.func.jvp(f_floats, x, tangents)[1]

        (got,), how, _ = _compiled_fn(case, build, [floats], False)
        t.notes.append(f"traced {how}")
        before = len(t.failures)
        compare_outputs(t, f"{name} compiled jvp", as_outputs(got), *want_jvp(case, name))
        if len(t.failures) > before:
            t.fail(f"{name}: compiled jvp differs: the custom jvp was dropped (pytorch #192985)")

    _compile_check(t, body)


def _second_derivative(case: Case, outs: tuple, ins: Inputs) -> dict | None:
    """d/d(inputs) of <gradient, v>: the gradient taken with create_graph=True, v fixed random; None when the
    gradient is not differentiable."""
    keys = ins.keys()
    xs = [ins.get(k) for k in keys]
    first = output_grads(outs, xs, case.seed, create_graph=True)
    vs = incoming(tuple(first), case.seed + 3)
    used = [(g, v) for g, v in zip(first, vs, strict=True) if g is not None and g.requires_grad]
    if not used:
        return None
    dd = torch.autograd.grad([g for g, _ in used], xs, [v for _, v in used], allow_unused=True)
    return dict(zip(keys, dd, strict=True))


def check_compile_double_backward(case: Case, t: Tally) -> None:
    """Double backward through torch.compile(fn) (create_graph=True; pytorch #181581, #183603): the gradient of
    <gradient, v> equals the reference's, first sample. Where torch.compile cannot double-backward the plain-torch
    reference either, the limit is PyTorch's, not fn's: n/a with the reason."""
    name, s = first_sample(case)

    def eager(f, inputs):
        ins = leaves(inputs)
        return _second_derivative(case, as_outputs(case.call(f, ins)), ins)

    def compiled(f):
        ins = leaves(s)
        run, _ = compile_traced(on_floats(case, f, ins)[0])
        return _second_derivative(case, as_outputs(run(*on_floats(case, f, ins)[1])), ins)

    def body():
        ins = leaves(s)
        run, how = _compiled_first_sample(case)
        outs = run(*on_floats(case, case.fn, ins)[1])
        try:
            got = _second_derivative(case, as_outputs(outs), ins)
        except RuntimeError:
            _torch_limit(case, compiled)
            raise
        want = eager(case.want_fn(), s)
        if want is None:
            raise NotApplicable("the reference's gradient is not differentiable")
        t.notes.append(f"traced {how}")
        if got is None or any(got[k] is None and want[k] is not None for k in got):
            _torch_limit(case, compiled)
            t.fail(f"{name}: the compiled gradient is not differentiable (create_graph=True gave a constant)")
            return
        truth = eager(case.want_fn(), to_float64(s)) if case.dtype != torch.float64 else None
        compare_grads(t, f"{name} compiled double backward", got, want, truth)

    _compile_check(t, body)


def _torch_limit(case: Case, compiled) -> None:
    """NotApplicable when torch.compile fails the same way on the plain-torch reference (PyTorch's limit)."""
    if case.reference is None:
        return
    try:
        ref = compiled(case.reference)
        failed_too = ref is None or any(v is None for v in ref.values())
        reason = "no second derivative"
    except RuntimeError as e:
        failed_too, reason = True, str(e).strip().splitlines()[0]
    if failed_too:
        raise NotApplicable(f"torch.compile cannot double-backward the plain-torch reference either: {reason}")


def check_compile_dynamic(case: Case, t: Tally) -> None:
    """torch.compile(fn, dynamic=True) over two sample sizes: outputs and gradients equal the reference's."""
    names = first_of_each_shape(case)[:2]  # needs two_shapes: two, with the same differentiable inputs

    def body():
        def build(f):
            return lambda args, kwargs, state: case.call_with(f, list(args), dict(kwargs), dict(state))

        ins = [leaves(case.samples[n]) for n in names]
        results, how, _ = _compiled_fn(case, build, [(i.args, i.kwargs, i.state) for i in ins], True, dynamic=True)
        for name, i, outs in zip(names, ins, results, strict=True):
            outs = as_outputs(outs)
            if case.reference is not None:
                compare_outputs(t, f"{name} dynamic", tuple(detached(o) for o in outs), *want_outputs(case, name))
            got = dict(zip(i.keys(), output_grads(outs, [i.get(k) for k in i.keys()], case.seed), strict=True))
            compare_grads(t, f"{name} dynamic", got, *want_grads(case, name))
        t.notes.append(f"traced {how}, samples {names}")

    _compile_check(t, body)
