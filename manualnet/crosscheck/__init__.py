"""Cross-check a custom torch.autograd.Function against a reference written in plain torch ops.

    report = check_function(MyFn.apply, reference, make_inputs)   # every check, float32 and float64, on the CPU
    report.assert_ok()                                            # AssertionError whose message is the table
    print(report.markdown())

`make_inputs(dtype, device, generator)` returns the sample inputs, passed positionally to `fn` and `reference`: a
tuple of tensors, or a dict {sample name: tuple} for several samples (shapes, edge values). Floating tensors are the
differentiable inputs (the harness sets requires_grad itself); integer tensors (labels) are passed as they are. The
checks are listed in manualnet.crosscheck.checks.CHECKS and described with their tolerances in docs/crosscheck.md.

The per-tensor comparison (compare, GradDiff, compare_all, format_table) lives in manualnet.crosscheck.compare and is
re-exported here.
"""

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from manualnet.crosscheck.checks import CHECKS, RTOL, TOLERANCE_TEXT, Case, NotApplicable, Tally, as_tuple
from manualnet.crosscheck.compare import GradDiff, compare, compare_all, format_table

__all__ = ["CHECKS", "GradDiff", "Report", "Result", "check_function", "compare", "compare_all", "format_table"]


@dataclass(frozen=True)
class Result:
    """One cell of the matrix: one check in one dtype on one device."""

    check: str
    dtype: str
    device: str
    status: str  # "passed", "failed" or "n/a"
    max_abs: float | None
    max_rel: float | None
    tolerance: str
    seconds: float
    note: str  # why it failed or does not apply; warnings; what was measured


@dataclass(frozen=True)
class Report:
    """The results of check_function, one per (check, dtype, device)."""

    name: str
    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(r.status != "failed" for r in self.results)

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    def warnings(self) -> list[Result]:
        return [r for r in self.results if "warning:" in r.note]

    def markdown(self) -> str:
        """The matrix as a Markdown table, under a heading with the Function's name and the verdict."""
        lines = [
            f"### {self.name}: {'ok' if self.ok else 'FAILED: ' + ', '.join(sorted({r.check for r in self.failed()}))}",
            "",
            "| check | dtype | device | result | max abs err | max rel err | tolerance | time (s) | note |",
            "| --- | --- | --- | --- | ---: | ---: | --- | ---: | --- |",
        ]
        for r in self.results:
            errs = ["" if e is None else f"{e:.2e}" for e in (r.max_abs, r.max_rel)]
            result = "**FAILED**" if r.status == "failed" else r.status
            note = r.note.replace("|", "\\|").replace("\n", " ")
            cells = (r.check, r.dtype, r.device, result, *errs, r.tolerance, f"{r.seconds:.2f}", note)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise AssertionError with the table as its message when a check failed."""
        if not self.ok:
            raise AssertionError("\n" + self.markdown())


def check_function(
    fn: Callable,
    reference: Callable,
    make_inputs: Callable,
    *,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    devices: Sequence[str | torch.device] = ("cpu",),
    checks: Sequence[str] | None = None,
    functions: Sequence[type] = (),
    kinks: Sequence[str] = (),
    batch_args: Sequence[int] = (0,),
    seed: int = 0,
    name: str | None = None,
) -> Report:
    """Run the named checks (default: all of CHECKS) of `fn` against `reference` for every dtype and device.

    fn, reference: callables over tensors, e.g. MyFn.apply and the same math in plain torch ops; both return a
        tensor or a tuple of tensors of the same shapes.
    make_inputs(dtype, device, generator): a tuple of tensors, or a dict {sample name: tuple}.
    functions: the autograd.Function classes whose backward the probes count (found by themselves when fn is
        MyFn.apply); name them when fn is a wrapper that calls Functions inside.
    kinks: names of samples placed on purpose where fn is not differentiable (gradcheck skips them).
    batch_args: positions of the inputs whose dim 0 is the sample dimension, for vmap_grad's per-sample gradients.
    Raises TypeError/ValueError naming the argument before any check runs.
    """
    for arg, value in (("fn", fn), ("reference", reference), ("make_inputs", make_inputs)):
        if not callable(value):
            raise TypeError(f"{arg}: expected a callable, got {type(value).__name__}")
    dtypes = _dtypes(dtypes)
    devices = _devices(devices)
    checks = _checks(checks)
    functions = _functions(fn, functions)
    cases = [
        _case(fn, reference, make_inputs, dt, dev, functions, kinks, batch_args, seed)
        for dev in devices
        for dt in dtypes
    ]
    results = []
    for check in checks:
        for case in cases:
            results.append(_run(check, case))
    return Report(name or _name(fn), tuple(results))


def _run(check: str, case: Case) -> Result:
    """One check on one case; an exception inside fn is that check failing, with the exception."""
    # Each check gets its own copies of the samples: a Function that modifies its inputs spoils no other check.
    case = replace(case, samples={n: tuple(t.clone() for t in s) for n, s in case.samples.items()})
    tally = Tally(rtol=RTOL.get(case.dtype))
    start = time.perf_counter()
    status = "passed"
    try:
        CHECKS[check](case, tally)
        if tally.failures:
            status = "failed"
    except NotApplicable as e:
        status = "n/a"
        tally.notes.append(str(e))
    except Exception as e:  # the user's Function (or torch under a transform) raised: that is this check failing
        status = "failed"
        where = traceback.extract_tb(e.__traceback__)[-1]
        tally.failures.append(f"raised {type(e).__name__}: {_first_line(e)} (at {where.name}:{where.lineno})")
    seconds = time.perf_counter() - start
    note = "; ".join(tally.failures + [f"warning: {w}" for w in tally.warnings] + tally.notes)
    measured = status != "n/a" and tally.rtol is not None
    tolerance = TOLERANCE_TEXT.get(check) or (f"rel {tally.rtol:g}" if tally.rtol is not None else "")
    return Result(
        check,
        str(case.dtype).removeprefix("torch."),
        str(case.device),
        status,
        tally.max_abs if measured else None,
        tally.max_rel if measured else None,
        tolerance,
        seconds,
        note,
    )


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _name(fn) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return f"{owner.__name__}.{fn.__name__}"
    return getattr(fn, "__qualname__", type(fn).__name__)


# -------------------------------------------------------------------------------------- argument checks (bad input)


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


def _checks(checks) -> list[str]:
    if checks is None:
        return list(CHECKS)
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


def _case(fn, reference, make_inputs, dtype, device, functions, kinks, batch_args, seed) -> Case:
    """Draw the samples for one (dtype, device) and check them, and the outputs' shapes, before any check runs."""
    generator = torch.Generator(device=device).manual_seed(seed)
    got = make_inputs(dtype, device, generator)
    samples = got if isinstance(got, dict) else {"sample": got}
    for sample_name, s in samples.items():
        where = f"make_inputs({dtype}, {device})" + (f"[{sample_name!r}]" if isinstance(got, dict) else "")
        if not isinstance(s, tuple) or not s or not all(isinstance(t, torch.Tensor) for t in s):
            raise TypeError(f"{where}: expected a non-empty tuple of tensors (or a dict of them), got {s!r:.200}")
        if not any(t.is_floating_point() for t in s):
            raise ValueError(f"{where}: expected at least one floating tensor, got dtypes {[t.dtype for t in s]}")
        for i, t in enumerate(s):
            if t.is_floating_point() and t.dtype != dtype:
                raise TypeError(f"{where}: expected floating tensors of dtype {dtype}, got {t.dtype} at {i}")
            if t.device != device:
                raise ValueError(f"{where}: expected tensors on {device}, got one on {t.device} at {i}")
        for i in batch_args:
            if not (isinstance(i, int) and 0 <= i < len(s)) or s[i].dim() == 0:
                raise ValueError(f"batch_args: expected positions of inputs with a dim 0 in {where}, got {i!r}")
        _same_shapes(fn, reference, s, where)
    for k in kinks:
        if k not in samples:
            raise ValueError(f"kinks: expected names of samples from make_inputs {list(samples)}, got {k!r}")
    return Case(fn, reference, samples, dtype, device, functions, frozenset(kinks), tuple(batch_args), seed)


def _same_shapes(fn, reference, sample: tuple, where: str) -> None:
    with torch.no_grad():
        try:
            outs = as_tuple(fn(*sample))
        except Exception:
            return  # fn's own failure is reported by each check
        refs = as_tuple(reference(*sample))
    shapes = [tuple(o.shape) for o in outs]
    ref_shapes = [tuple(r.shape) for r in refs]
    if shapes != ref_shapes:
        raise ValueError(f"reference: expected outputs of fn's shapes {shapes} on {where}, got {ref_shapes}")
