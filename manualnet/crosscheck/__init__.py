"""Cross-check a custom torch.autograd.Function or custom op against a reference written in plain torch ops.

    report = check_function(MyFn.apply, reference, make_inputs)   # every check, float32 and float64, on the CPU
    report.assert_ok()                                            # AssertionError: summary, diagnosis, table
    print(report.markdown())

    my_fn = FunctionUnderTest(MyFn.apply, reference, make_inputs, {"kinks": ["at 0"]})  # its options, named once
    my_fn.check(profile="quick").assert_ok()                      # check_function with them and the run's

`make_inputs(dtype, device, generator)` returns one sample or a dict {sample name: sample}. A sample is a tuple of
positional arguments or a `Sample(*args, **kwargs)`; floating tensors are the differentiable inputs (the harness
sets requires_grad itself), everything else (integer tensors, ints, floats, None, tuples, strings, dtypes) is passed
as it is. `fn` and `reference` may be nn.Modules: their parameters are differentiated like inputs and compared by
name, and the reference runs with fn's parameter values. `fn` may be a custom op (`torch.library.custom_op`,
`triton_op`, `torch.ops.ns.op`): opcheck's tests run on it too. The checks are listed in CHECKS and described with
their tolerances in docs/crosscheck.md. The Report opens with its diagnosis (Report.diagnosis): each distinct symptom
once, inputs by their parameter names, exceptions at the user's file and line.
"""

import inspect
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from manualnet.crosscheck.case import (
    FLOOR,
    Case,
    Inputs,
    K,
    NotApplicable,
    ReferenceFailed,
    Sample,
    Tally,
    as_outputs,
    leaves,
)
from manualnet.crosscheck.checks import CHECKS, FAST_MODE_NUMEL, PROFILES
from manualnet.crosscheck.compare import GradDiff, compare, compare_all, format_table
from manualnet.crosscheck.ddp_check import require_two_processes
from manualnet.crosscheck.diagnosis import Symptom, first_line, raised
from manualnet.crosscheck.ops import OP_KINDS, as_op, library_functions, op_name, overload, user_method
from manualnet.crosscheck.report import Report, Result
from manualnet.crosscheck.subject import FunctionUnderTest

__all__ = [
    "CHECKS",
    "FAST_MODE_NUMEL",
    "FLOOR",
    "FunctionUnderTest",
    "K",
    "PROFILES",
    "GradDiff",
    "Report",
    "Result",
    "Sample",
    "Symptom",
    "check_function",
    "compare",
    "compare_all",
    "format_table",
]


def check_function(
    fn: Callable | nn.Module,
    reference: Callable | nn.Module | None,
    make_inputs: Callable,
    *,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    devices: Sequence[str | torch.device] = ("cpu",),
    checks: Sequence[str] | None = None,
    profile: str = "full",
    functions: Sequence[type] = (),
    kinks: Sequence[str] = (),
    batch_args: Sequence[int] = (0,),
    seed: int = 0,
    name: str | None = None,
    strict: bool = False,
    no_grad: Sequence[str | int] = (),
    k: float = K,
    floors: Mapping[torch.dtype, float] | None = None,
    raise_exception: bool = False,
) -> Report:
    """Run the checks of `profile` ("full": all of CHECKS but the opt-in `ddp`; "quick": those but the checks that
    compile: torch.compile's and opcheck's AOT test), or the named `checks`, of `fn` against `reference` for every
    dtype and device.

    fn, reference: callables, nn.Modules or custom ops (torch.library.custom_op, triton_op, torch.ops.ns.op), e.g.
        MyFn.apply and the same math in plain torch ops; reference=None runs what needs no reference (gradcheck,
        transforms against fn's own eager result, ...). opcheck's tests run when fn is a custom op.
    make_inputs(dtype, device, generator): a tuple, a Sample, or a dict {sample name: tuple or Sample}.
    functions: the autograd.Function classes whose backward the probes count (found by themselves when fn is
        MyFn.apply, and for custom ops with register_autograd); name them when fn is a wrapper or a Module that
        calls Functions inside.
    kinks: names of samples placed on purpose where fn is not differentiable: any one-sided gradient is accepted
        there, and finite differences skip them.
    batch_args: positions of the inputs whose dim 0 is the sample dimension, for vmap_grad's per-sample gradients.
    strict: warnings count as failures in Report.ok.
    no_grad: inputs that get no gradient on purpose (a loss's target, a clamp's bounds, a quantizer's scale), by
        parameter name or position: passed as they are, never differentiated; every check runs on the others.
    k, floors: the tolerance rule, err(fn) <= k * err(reference) + floors[dtype]; floors, e.g.
        {torch.float32: 1e-4}, replaces FLOOR's entries for the dtypes it names.
    raise_exception: raise AssertionError (Report.assert_ok) when a check fails, as gradcheck does.
    Raises TypeError/ValueError naming the argument before any check runs.
    """
    _callable("fn", fn)
    if reference is not None:
        _callable("reference", reference)
    if not callable(make_inputs):
        raise TypeError(f"make_inputs: expected a callable, got {_type(make_inputs)}")
    _same_parameters(fn, reference)
    dtypes = _dtypes(dtypes)
    devices = _devices(devices)
    checks = _checks(checks, profile)
    if "ddp" in checks:
        require_two_processes()
    functions = _functions(fn, functions)
    rule, no_grad = _options(fn, reference, k, floors, no_grad, raise_exception)
    cases = [
        replace(_case(fn, reference, make_inputs, dt, dev, functions, kinks, batch_args, seed, no_grad, rule), **rule)
        for dev in devices
        for dt in dtypes
    ]
    report = Report(name or _name(fn), tuple(_run(check, case) for check in checks for case in cases), strict)
    if raise_exception:
        report.assert_ok()
    return report


def _run(check: str, case: Case) -> Result:
    """One check on one case; an exception inside fn is that check failing, with the exception; an exception
    inside the reference is the reference failing."""
    # Each check gets its own copies of the samples: a Function that modifies its inputs spoils no other check.
    case = replace(case, samples={n: s.map(lambda t: t.clone()) for n, s in case.samples.items()})
    tally = Tally(case.dtype, names=case.names, k=case.k, floors=case.floors)
    start = time.perf_counter()
    status = None
    try:
        CHECKS[check](case, tally)
    except NotApplicable as e:
        status = "n/a"
        tally.notes.insert(0, str(e))
    except ReferenceFailed as e:
        cause = e.__cause__
        symptom = raised(cause, "reference raises")
        tally.fail(f"the reference raised {type(cause).__name__}: {first_line(cause)} (at {symptom.where})", symptom)
    except Exception as e:  # the user's Function (or torch under a transform) raised: that is this check failing
        symptom = raised(e)
        tally.fail(f"raised {type(e).__name__}: {first_line(e)} (at {symptom.where})", symptom)
    seconds = time.perf_counter() - start
    if status is None:
        status = "failed" if tally.failures else "warning" if tally.warnings else "passed"
    note = "; ".join(tally.failures + [f"warning: {w}" for w in tally.warnings] + tally.notes)
    measured = status != "n/a" and tally.measured
    return Result(
        check,
        str(case.dtype).removeprefix("torch."),
        str(case.device),
        status,
        tally.max_abs if measured else None,
        tally.max_rel if measured else None,
        tally.ref_rel if measured and case.reference is not None else None,
        tally.rule(),
        seconds,
        note,
        _symptoms(case, tally) if status in ("failed", "warning") else (),
    )


def _symptoms(case: Case, tally: Tally) -> tuple[Symptom, ...]:
    """The tally's symptoms and warnings without the samples' names (so that equal ones group), each value off the
    truth with the Function's method to look at."""
    names = sorted(case.samples, key=len, reverse=True)

    def bare(text: str) -> str:
        for n in names:
            if text.startswith(n) and text[len(n) : len(n) + 1] in (" ", ":"):
                return text[len(n) :].lstrip(" :")
        return text

    out = []
    for s in tally.symptoms:
        hint = s.hint or (_look_at(case, s.subject) if s.kind == "off" else "")
        out.append(replace(s, subject=bare(s.subject), hint=hint))
    return tuple(out + [Symptom("warning", bare(w)) for w in tally.warnings])


def _look_at(case: Case, subject: str) -> str:
    """'look at Cls.backward (file.py:12)' for a gradient off the truth, forward for an output, jvp for a tangent,
    when fn is one known Function; for a custom op, the backward registered with register_autograd (or the
    custom_op's implementation), by its own name and file:line."""
    if len(case.functions) != 1:
        return ""
    method = "jvp" if subject.startswith("jvp") else "backward" if subject.startswith("d(") else "forward"
    name, f, whose = user_method(case.functions[0], method)
    try:
        f = inspect.unwrap(f)
        lines, start = inspect.getsourcelines(f)
        first = next((i for i, line in enumerate(lines) if line.lstrip().startswith("def ")), 0)  # past decorators
        where = f"{os.path.basename(inspect.getsourcefile(f))}:{start + first}"
    except (OSError, TypeError):
        return f"look at {name}{whose}"
    return f"look at {name} ({where}){whose}"


def _type(value) -> str:
    return type(value).__name__


def _name(fn) -> str:
    if as_op(fn) is not None:
        return op_name(as_op(fn))
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{fn.__name__}"
    if isinstance(fn, nn.Module):
        return type(fn).__name__
    return getattr(fn, "__qualname__", type(fn).__name__)


# -------------------------------------------------------------------------------------- argument checks (bad input)


def _callable(arg: str, value) -> None:
    """fn or reference: a callable (a function, MyFn.apply, an nn.Module or a custom op), not a Function class."""
    expected = f"a callable (a function, MyFn.apply, an nn.Module or {OP_KINDS}){' or None' * (arg == 'reference')}"
    if isinstance(value, type) and issubclass(value, torch.autograd.Function):
        raise TypeError(f"{arg}: expected {expected}, got the autograd.Function class {value.__name__}: pass its apply")
    if not callable(value):
        raise TypeError(f"{arg}: expected {expected}, got {_type(value)}")


def _same_parameters(fn, reference) -> None:
    if not isinstance(fn, nn.Module) or reference is None:
        return
    names = sorted(n for n, _ in fn.named_parameters())
    ref_names = sorted(n for n, _ in reference.named_parameters()) if isinstance(reference, nn.Module) else None
    if ref_names is not None and ref_names != names:
        raise ValueError(f"reference: expected a module with fn's parameter names {names}, got {ref_names}")


def _options(fn, reference, k, floors, no_grad, raise_exception) -> tuple[dict, tuple]:
    """({"k", "floors", "names"} for every Case, no_grad as a tuple), the options checked."""
    if not isinstance(raise_exception, bool):
        raise TypeError(f"raise_exception: expected True or False, got {_type(raise_exception)} {raise_exception!r}")
    rule = {"k": _positive("k", k), "floors": _floors(floors), "names": _input_names(fn, reference)}
    return rule, _no_grad(no_grad)


def _positive(arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{arg}: expected a positive number, got {_type(value)} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{arg}: expected a positive number, got {value!r}")
    return float(value)


def _floors(floors) -> dict:
    """FLOOR with the caller's entries in place of its own."""
    if floors is None:
        return dict(FLOOR)
    if not isinstance(floors, Mapping):
        raise TypeError(f"floors: expected a dict {{torch dtype: positive number}}, got {_type(floors)} {floors!r}")
    for dt, value in floors.items():
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise TypeError(f"floors: expected floating torch dtypes as keys (e.g. torch.float32), got {dt!r}")
        _positive(f"floors[{dt}]", value)
    return FLOOR | {dt: float(v) for dt, v in floors.items()}


def _no_grad(no_grad) -> tuple:
    no_grad = (no_grad,) if isinstance(no_grad, str | int) else tuple(no_grad)
    for x in no_grad:
        if isinstance(x, bool) or not isinstance(x, str | int):
            raise TypeError(f"no_grad: expected input names or positions, got {_type(x)} {x!r}")
    return no_grad


def _input_names(fn, reference) -> tuple[str, ...]:
    """The names of the positional parameters of the reference, else of fn (a Function's forward, less ctx; an op's
    schema)."""
    for f in (reference, fn):
        names = _positional_names(f)
        if names:
            return names
    return ()


def _positional_names(f) -> tuple[str, ...]:
    if f is None:
        return ()
    op = as_op(f) and overload(as_op(f))
    if op is not None:  # an op's names are its schema's (a packet of several overloads has none)
        return () if isinstance(op, str) else tuple(a.name for a in op._schema.arguments if not a.kwarg_only)
    owner = getattr(f, "__self__", None)
    skip = 0
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        f, skip = owner.forward, int(owner.setup_context is torch.autograd.Function.setup_context)  # ctx
    try:
        params = list(inspect.signature(f).parameters.values())[skip:]
    except (TypeError, ValueError):  # a builtin without a signature
        return ()
    names = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    return tuple(names)


def _fixed(no_grad: tuple, names: tuple, inputs: Inputs, where: str) -> frozenset:
    """The keys of the inputs named in no_grad, in one sample."""
    keys = set()
    for x in no_grad:
        if isinstance(x, int):
            if not 0 <= x < len(inputs.args):
                raise ValueError(
                    f"no_grad: expected positions of inputs of {where} (0 to {len(inputs.args) - 1}), got {x}"
                )
            keys.add(("arg", x))
        elif x in inputs.kwargs:
            keys.add(("kwarg", x))
        elif x in names:
            if names.index(x) < len(inputs.args):
                keys.add(("arg", names.index(x)))
        elif x in inputs.params:
            keys.add(("param", x))
        else:
            known = list(dict.fromkeys((*names, *inputs.kwargs, *inputs.params)))
            raise ValueError(f"no_grad: expected names of fn's inputs {known} or positions, got {x!r}")
    return frozenset(keys)


def _dtypes(dtypes) -> tuple[torch.dtype, ...]:
    dtypes = tuple(dtypes) if isinstance(dtypes, list | tuple) else (dtypes,)
    for dt in dtypes:
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise TypeError(f"dtypes: expected floating torch dtypes (e.g. torch.float32), got {dt!r}")
    if not dtypes:
        raise ValueError("dtypes: expected at least one dtype, got none")
    return dtypes


def _devices(devices) -> tuple[torch.device, ...]:
    devices = (devices,) if isinstance(devices, str | torch.device) else tuple(devices)
    out = []
    for d in devices:
        try:
            dev = torch.device(d)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"devices: expected device names such as 'cpu' or 'cuda', got {d!r}") from e
        ok = dev.type == "cpu" or (
            dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()
        )
        if not ok:
            here = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
            raise ValueError(f"devices: expected a device present here ({', '.join(here)}), got {d!r}")
        out.append(torch.device("cuda", dev.index or 0) if dev.type == "cuda" else dev)
    if not out:
        raise ValueError("devices: expected at least one device, got none")
    return tuple(out)


def _checks(checks, profile: str) -> list[str]:
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {list(PROFILES)}, got {profile!r}")
    if checks is None:
        return PROFILES[profile]
    checks = [checks] if isinstance(checks, str) else list(checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise ValueError(f"checks: expected names from {list(CHECKS)}, got {unknown or checks!r}")
    return checks


def _functions(fn, functions) -> tuple[type, ...]:
    functions = tuple(functions)
    for f in functions:
        if not (isinstance(f, type) and issubclass(f, torch.autograd.Function)):
            raise TypeError(f"functions: expected torch.autograd.Function subclasses, got {f!r}")
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function) and owner not in functions:
        functions = (owner, *functions)
    return functions


def _case(fn, reference, make_inputs, dtype, device, functions, kinks, batch_args, seed, no_grad, rule) -> Case:
    """Draw the samples for one (dtype, device) and check them, and the outputs, before any check runs."""
    generator = torch.Generator(device=device).manual_seed(seed)
    got = make_inputs(dtype, device, generator)
    raw = got if isinstance(got, dict) else {"sample": got}
    state, params = _state(fn, dtype, device)
    samples = {}
    for sample_name, s in raw.items():
        where = f"make_inputs({dtype}, {device})" + (f"[{sample_name!r}]" if isinstance(got, dict) else "")
        if isinstance(s, Sample):
            inputs = Inputs(tuple(s.args), dict(s.kwargs), state, params)
        elif isinstance(s, tuple):
            inputs = Inputs(s, {}, state, params)
        else:
            raise TypeError(f"{where}: expected a tuple, a Sample or a dict of them, got {_type(s)} {s!r:.200}")
        inputs = replace(inputs, fixed=_fixed(no_grad, rule["names"], inputs, where))
        _check_sample(inputs, where, dtype, device, batch_args)
        samples[sample_name] = inputs
    for k in kinks:
        if k not in samples:
            raise ValueError(f"kinks: expected names of samples from make_inputs {list(samples)}, got {k!r}")
    case = Case(fn, reference, samples, dtype, device, functions, frozenset(kinks), tuple(batch_args), seed, False)
    case.make_inputs = make_inputs
    case.inplace = any(_modifies_inputs(case, s) for s in samples.values())
    case.functions = (*functions, *_library_functions(case))
    for sample_name, s in samples.items():
        _same_shapes(case, s, f"make_inputs({dtype}, {device})[{sample_name!r}]")
    return case


def _state(fn, dtype, device) -> tuple[dict, tuple[str, ...]]:
    """fn's parameters and buffers (floating ones in dtype) on device, and the parameters' names."""
    if not isinstance(fn, nn.Module):
        return {}, ()
    params = tuple(n for n, _ in fn.named_parameters())
    state = {
        n: t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype).clone()
        for n, t in (*fn.named_parameters(), *fn.named_buffers())
    }
    return state, params


def _check_sample(inputs: Inputs, where: str, dtype, device, batch_args) -> None:
    if not inputs.keys():
        given = [
            _type(v) if not isinstance(v, Tensor) else str(v.dtype) for v in (*inputs.args, *inputs.kwargs.values())
        ]
        raise ValueError(f"{where}: expected at least one floating tensor (or a module parameter), got {given}")
    named = [(f"input {i}", v) for i, v in enumerate(inputs.args)] + [
        (f"input {k}=", v) for k, v in inputs.kwargs.items()
    ]
    for at, v in named:
        if isinstance(v, Tensor):
            if v.is_floating_point() and v.dtype != dtype:
                raise TypeError(f"{where}: expected floating tensors of dtype {dtype}, got {v.dtype} at {at}")
            if v.device != device:
                raise ValueError(f"{where}: expected tensors on {device}, got one on {v.device} at {at}")
    for i in batch_args:
        if not (isinstance(i, int) and 0 <= i < len(inputs.args)) or not isinstance(inputs.args[i], Tensor):
            raise ValueError(f"batch_args: expected positions of tensor inputs in {where}, got {i!r}")


def _modifies_inputs(case: Case, inputs: Inputs) -> bool:
    """fn is an in-place Function (mark_dirty): it changes an input in place and returns it, seen on copies by
    version counters. An input changed but not returned is a bug that saved_tensors reports."""
    copies = leaves(inputs).map(lambda t: t.clone())  # not leaves: autograd allows them to be changed in place
    before = [t._version for t in copies.tensors()]
    try:
        outs = as_outputs(case.call(case.fn, copies))
    except Exception:
        return False  # fn's own failure is reported by each check
    changed = [t for t, v in zip(copies.tensors(), before, strict=True) if t._version != v]
    return any(o is t for o in outs for t in changed)  # mark_dirty returns the input object itself


def _library_functions(case: Case) -> tuple[type, ...]:
    """The Function classes that register_autograd generated for the custom ops behind fn, found on the autograd
    graph of fn's outputs on each sample: the probes count their backward; torch.func cannot transform them."""
    found = []
    for inputs in case.samples.values():
        try:
            outs = as_outputs(case.call(case.fn, leaves(inputs)))
        except Exception:
            continue  # fn's own failure is reported by each check
        found += [f for f in library_functions(outs) if f not in found and f not in case.functions]
    return tuple(found)


def _same_shapes(case: Case, inputs: Inputs, where: str) -> None:
    if case.reference is None:
        return
    inputs = inputs.map(lambda t: t.clone())  # a fn that changes its inputs in place must not spoil the sample
    with torch.no_grad():
        try:
            outs = as_outputs(case.call(case.fn, inputs))
            refs = as_outputs(case.call(case.reference, inputs))
        except Exception:
            return  # fn's or the reference's own failure is reported by each check
    shapes = [tuple(o.shape) for o in outs if isinstance(o, Tensor)]
    ref_shapes = [tuple(r.shape) for r in refs if isinstance(r, Tensor)]
    if shapes != ref_shapes:
        raise ValueError(f"reference: expected outputs of fn's shapes {shapes} on {where}, got {ref_shapes}")
