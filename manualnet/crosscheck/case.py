"""The machinery under every check: a sample's inputs (positional, keyword, a Module's parameters), calling `fn` or
the reference on them, gradients with fixed incoming gradients, the tolerance rule, the probe and the compile trace.

Inputs are addressed by keys: ("arg", i) for the i-th positional argument, ("kwarg", name) for a keyword argument,
("param", name) for a parameter of `fn` when it is an nn.Module. Floating tensors are the differentiable inputs;
integer and bool tensors and every other Python value are passed as they are.
"""

import contextlib
import math
from dataclasses import dataclass, field, replace

import torch
import torch.fx.experimental.validator  # noqa: F401  imported before the first compile: torch imports it mid-compile
from torch import Tensor, nn
from torch._dynamo.comptime import comptime
from torch._ops import OpOverload, OpOverloadPacket

from manualnet.crosscheck.diagnosis import Symptom, subject_of
from manualnet.crosscheck.ops import FUNC_LIMIT, function_name, library_op, schema_name

# The tolerance rule (docs/crosscheck.md): against a float64 truth (the reference in float64, or the hull of its
# one-sided gradients at a kink), fn's error may be K times the reference's own error in the same dtype, plus FLOOR.
K = 4.0
FLOOR = {torch.float64: 1e-6, torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}
KINK_STEP = 1e-7  # relative step to either side of a kink sample for the one-sided gradients


class Sample:
    """One sample of inputs: Sample(*args, **kwargs) calls fn(*args, **kwargs); a plain tuple is positional."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __repr__(self) -> str:
        kw = [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Sample({', '.join([repr(a) for a in self.args] + kw)})"


class NotApplicable(Exception):
    """Raised by a check that does not apply to this Function, dtype or device; the message says why."""


class ReferenceFailed(Exception):
    """The reference raised: the check reports the reference failing, with its exception."""


def is_float(t: object) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point()


def as_outputs(out) -> tuple:
    """A Function's outputs as a tuple: a tensor, a tuple or list of values, or one other value."""
    return tuple(out) if isinstance(out, tuple | list) else (out,)


@dataclass(frozen=True)
class Inputs:
    """One sample's arguments, and the parameters and buffers of `fn` when it is an nn.Module (by name)."""

    args: tuple
    kwargs: dict
    state: dict = field(default_factory=dict)
    params: tuple[str, ...] = ()  # the names in state that are parameters (differentiated); the rest are buffers
    fixed: frozenset = frozenset()  # keys of floating inputs passed but not differentiated (no_grad=)

    def keys(self) -> list[tuple]:
        """The keys of the differentiable inputs (floating tensors not in `fixed`), in order."""
        keys = [("arg", i) for i, a in enumerate(self.args) if is_float(a)]
        keys += [("kwarg", k) for k, v in self.kwargs.items() if is_float(v)]
        keys += [("param", n) for n in self.params if is_float(self.state[n])]
        return [k for k in keys if k not in self.fixed]

    def get(self, key: tuple):
        kind, k = key
        return {"arg": self.args, "kwarg": self.kwargs, "param": self.state}[kind][k]

    def put(self, values: dict) -> "Inputs":
        """A copy with the inputs at the given keys replaced."""
        args, kwargs, state = list(self.args), dict(self.kwargs), dict(self.state)
        for (kind, k), v in values.items():
            {"arg": args, "kwarg": kwargs, "param": state}[kind][k] = v
        return replace(self, args=tuple(args), kwargs=kwargs, state=state)

    def map(self, f) -> "Inputs":
        """A copy with f applied to every tensor (arguments, parameters, buffers)."""

        def g(v):
            return f(v) if isinstance(v, Tensor) else v

        return replace(
            self,
            args=tuple(g(a) for a in self.args),
            kwargs={k: g(v) for k, v in self.kwargs.items()},
            state={k: g(v) for k, v in self.state.items()},
        )

    def tensors(self) -> list[Tensor]:
        return [v for v in (*self.args, *self.kwargs.values(), *self.state.values()) if isinstance(v, Tensor)]


def key_name(key: tuple, names: tuple[str, ...] = ()) -> str:
    """An input's name in the report: its parameter name (names: fn's or the reference's positional parameters),
    "input i" for a positional one without a name, "param weight" for a Module's parameter."""
    kind, k = key
    if kind == "arg":
        return names[k] if k < len(names) else f"input {k}"
    return k if kind == "kwarg" else f"param {k}"


@dataclass
class Case:
    """One column of the matrix: fn, the reference and the samples in one dtype on one device."""

    fn: object
    reference: object  # None: the checks that need one are n/a
    samples: dict[str, Inputs]
    dtype: torch.dtype
    device: torch.device
    functions: tuple[type, ...]  # the autograd.Function classes behind fn, probed when known
    kinks: frozenset[str]  # samples on a non-differentiable point: one-sided gradients accepted, no finite differences
    batch_args: tuple[int, ...]  # positional inputs whose dim 0 is the sample dimension (vmap_grad)
    seed: int
    inplace: bool  # fn modifies an input (mark_dirty): every call gets fresh copies
    cache: dict = field(default_factory=dict)
    make_inputs: object = None  # for a second draw of the samples (compile_fresh_inputs)
    names: tuple[str, ...] = ()  # the positional inputs' parameter names (the reference's, else fn's)
    k: float = K  # the tolerance rule's factor and floors, as the caller set them
    floors: dict = field(default_factory=lambda: dict(FLOOR))

    def call(self, f, inputs: Inputs):
        """f(*args, **kwargs); an nn.Module runs with the sample's parameters (torch.func.functional_call)."""
        return self.call_with(f, list(inputs.args), dict(inputs.kwargs), dict(inputs.state))

    def call_with(self, f, args: list, kwargs: dict, state: dict):
        """The one place where fn and the reference are called. In-place Functions get fresh copies; an exception
        inside the reference is raised as ReferenceFailed, so that it is never taken for fn failing."""
        if self.inplace:
            args = [a.clone() if isinstance(a, Tensor) else a for a in args]
            kwargs = {k: v.clone() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        try:
            if isinstance(f, nn.Module):
                names = self.cache.setdefault(id(f), {n for n, _ in (*f.named_parameters(), *f.named_buffers())})
                state = {n: v for n, v in state.items() if n in names}
                return torch.func.functional_call(f, state, tuple(args), kwargs)
            return f(*args, **kwargs)
        except Exception as e:
            if f is self.reference and self.reference is not self.fn:
                raise ReferenceFailed(e) from e
            raise

    def want_fn(self):
        """What the transforms are compared with: the reference, or fn's own eager result when there is none."""
        return self.fn if self.reference is None else self.reference


# ---------------------------------------------------------------------------------------- gradients and transforms


def leaves(inputs: Inputs, wrt=None) -> Inputs:
    """Fresh copies of the inputs; the differentiable ones (or those at the keys `wrt`) require grad."""
    wrt = set(inputs.keys() if wrt is None else wrt)
    return inputs.put({k: inputs.get(k).detach().clone().requires_grad_(k in wrt) for k in inputs.keys()})


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


def output_grads(outs: tuple, xs: list, seed: int, outputs=None, contiguous_g=True, create_graph=False) -> list:
    """d/d(xs) of sum_k <outs_k, g_k> over the floating outputs numbered in `outputs` (default: all)."""
    gs = incoming(outs, seed, contiguous_g)
    used = [k for k in range(len(outs)) if gs[k] is not None and outs[k].requires_grad]
    used = [k for k in used if outputs is None or k in outputs]
    if not used or not xs:
        return [None] * len(xs)
    return list(
        torch.autograd.grad(
            [outs[k] for k in used], xs, [gs[k] for k in used], allow_unused=True, create_graph=create_graph
        )
    )


def grads(case: Case, f, inputs: Inputs, wrt=None, outputs=None, ins: Inputs | None = None, contiguous_g=True):
    """{key: d/d(input at key) of sum_k <out_k, g_k>} for the keys `wrt` (default: every differentiable input)."""
    wrt = inputs.keys() if wrt is None else wrt
    ins = leaves(inputs, wrt) if ins is None else ins
    outs = as_outputs(case.call(f, ins))
    return dict(zip(wrt, output_grads(outs, [ins.get(k) for k in wrt], case.seed, outputs, contiguous_g), strict=True))


def on_floats(case: Case, f, inputs: Inputs):
    """(f as a function of the differentiable inputs only, the rest fixed; those inputs; their keys)."""
    keys = inputs.keys()
    args0, kwargs0, state0 = list(inputs.args), dict(inputs.kwargs), dict(inputs.state)

    # Plain list and dict operations only: under torch.compile, Dynamo traces this too.
    def of_floats(*floats):
        args, kwargs, state = list(args0), dict(kwargs0), dict(state0)
        for (kind, k), v in zip(keys, floats, strict=True):
            if kind == "arg":
                args[k] = v
            elif kind == "kwarg":
                kwargs[k] = v
            else:
                state[k] = v
        return case.call_with(f, args, kwargs, state)

    return of_floats, tuple(inputs.get(k) for k in keys), keys


def floating_outputs(f):
    """f with its non-floating outputs (indices, flags, Python values) left out: what the transforms can take."""

    def g(*a):
        outs = [o for o in as_outputs(f(*a)) if is_float(o)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    return g


def scalar_loss(case: Case, f, inputs: Inputs):
    """(loss, differentiable inputs, their keys): loss(*floats) = sum_k <f(inputs with floats)_k, g_k>."""
    f_floats, floats, keys = on_floats(case, f, inputs)
    with torch.no_grad():
        gs = incoming(as_outputs(case.call(f, inputs)), case.seed)

    def loss(*floats):
        outs = as_outputs(f_floats(*floats))
        return sum((o * g).sum() for o, g in zip(outs, gs, strict=True) if g is not None)

    return loss, floats, keys


def to_float64(inputs: Inputs) -> Inputs:
    return inputs.map(lambda t: t.double() if t.is_floating_point() else t)


# ------------------------------------------------------------------------------------------------ the tolerance rule


def distance(a: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Elementwise distance of a from the interval [lo, hi] (0 inside), in float64; NaN where a is NaN."""
    a = a.detach().double()
    d = torch.maximum(lo - a, a - hi).clamp_min(0)
    return torch.where(a.isnan() != (lo.isnan() & hi.isnan()), torch.full_like(d, math.nan), d)


def rel_error(a: Tensor, lo: Tensor, hi: Tensor) -> tuple[float, float]:
    """(max abs distance of a from [lo, hi], that / max |truth|): 0 for empty tensors, inf for NaN or a nonzero
    distance from an all-zero truth."""
    if a.numel() == 0:
        return 0.0, 0.0
    d = distance(a, lo, hi)
    if d.isnan().any():
        return math.inf, math.inf
    max_abs = d.max().item()
    scale = torch.maximum(lo.abs(), hi.abs()).nan_to_num(0).max().item()
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf))


@dataclass
class Tally:
    """What one check found: the worst errors (fn's and the reference's own), failures (the notes of the matrix's
    cell) with their Symptoms (the diagnosis), warnings, notes, and the floors of the rule it applied."""

    dtype: torch.dtype
    max_abs: float = 0.0
    max_rel: float = 0.0
    ref_rel: float = 0.0
    measured: bool = False
    tolerance: str = ""  # set by a check with a tolerance of its own (gradcheck's, bitwise); else the rule applied
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    symptoms: list[Symptom] = field(default_factory=list)
    names: tuple[str, ...] = ()
    k: float = K
    floors: dict = field(default_factory=lambda: dict(FLOOR))
    applied: dict = field(default_factory=dict)  # {dtype: floor} of every comparison made by the rule

    def floor(self, dtype: torch.dtype | None = None) -> float:
        return self.floors.get(dtype or self.dtype, self.floors[torch.float32])

    def name(self, key: tuple) -> str:
        """The input at key by its parameter name (key_name)."""
        return key_name(key, self.names)

    def rule(self) -> str:
        """The tolerance as applied: "<= K x ref + floor", with the dtype of each floor that is not the case's."""
        if self.tolerance:
            return self.tolerance
        applied = self.applied or {self.dtype: self.floor()}
        floors = [
            f"{f:g}" + ("" if dt == self.dtype else f" ({str(dt).removeprefix('torch.')})") for dt, f in applied.items()
        ]
        return f"<= {self.k:g} x ref + {', '.join(floors)}"

    def compare(self, what: str, got, want, truth=None, dtype: torch.dtype | None = None, subject: str = "") -> bool:
        """Record got against want (same dtype) and the float64 truth (a tensor, or an interval (lo, hi) at a
        kink; None: want is the truth). Passes when err(got) <= k * err(want) + floor[dtype]. subject: what the
        diagnosis calls the value (default: the "d(x)" or "output k" that `what` names)."""
        if got is None and want is None:
            return True
        if not isinstance(want, Tensor) or not isinstance(got, Tensor):
            return self.equal(what, got, want)
        if not (got.is_floating_point() or got.is_complex()):
            return self.equal(what, got, want)
        if got.shape != want.shape:
            self.fail(f"{what}: shape {tuple(got.shape)}, the reference's {tuple(want.shape)}")
            return False
        lo, hi = truth if isinstance(truth, tuple) else (want if truth is None else truth,) * 2
        lo, hi = lo.detach().double().to(got.device), hi.detach().double().to(got.device)
        max_abs, err = rel_error(got, lo, hi)
        _, ref_err = rel_error(want, lo, hi)
        self.measured = True
        self.max_abs, self.max_rel, self.ref_rel = (
            max(self.max_abs, max_abs),
            max(self.max_rel, err),
            max(self.ref_rel, ref_err),
        )
        floor = self.floor(dtype)
        self.applied[dtype or self.dtype] = floor
        bound = self.k * ref_err + floor
        if not err <= bound:  # NaN fails too
            ref = f", the reference's own {ref_err:.2e}" if ref_err > 0 else ""
            self.fail(f"{what}: rel err {err:.2e} > {bound:.2g}{ref}", Symptom("off", subject or subject_of(what), err))
            return False
        return True

    def compare_grad(self, what: str, got, want, truth=None, subject: str = "") -> bool:
        """A gradient: None on fn's side where the reference has one is a failure; None on the reference's side
        counts as zeros."""
        if got is None and want is not None:
            self.fail(
                f"{what}: no gradient (None), the reference has one", Symptom("none", subject or subject_of(what))
            )
            return False
        if want is None and got is not None:
            want = torch.zeros_like(got)
            truth = None if truth is None else torch.zeros_like(got, dtype=torch.float64)
        return self.compare(what, got, want, truth, subject=subject)

    def equal(self, what: str, got, want) -> bool:
        """Integer and bool tensors and non-tensor values: exactly equal."""
        if isinstance(got, Tensor) and isinstance(want, Tensor):
            same = got.dtype == want.dtype and got.shape == want.shape and torch.equal(got.cpu(), want.cpu())
        else:
            try:
                same = bool(got == want) if not hasattr(got, "shape") else bool((got == want).all())
            except Exception:
                same = False
            same = same and type(got) is type(want)
        if not same:
            self.fail(f"{what}: {_short(got)}, the reference's {_short(want)}")
        return same

    def fail(self, message: str, symptom: Symptom | None = None) -> None:
        """A failure: `message` is the cell's note; `symptom` what the diagnosis groups it by (default: the
        message itself, less the sample's name)."""
        self.failures.append(message)
        self.symptoms.append(symptom or Symptom("other", message))


def _short(v) -> str:
    if isinstance(v, Tensor):
        return f"{v.dtype} tensor of shape {tuple(v.shape)}" + (f" {v.tolist()}" if v.numel() <= 6 else "")
    return f"{type(v).__name__} {v!r:.80}"


# ---------------------------------------------------------------------------------------------- probe and compile


def old_style(functions: tuple[type, ...]) -> list[str]:
    """Names of the Functions written as forward(ctx, ...) (no setup_context): torch.func cannot transform them."""
    return [f.__name__ for f in functions if f.setup_context is torch.autograd.Function.setup_context]


def library_ops(case: Case) -> list[str]:
    """The qualified names of the custom ops behind fn whose autograd is register_autograd's generated Function."""
    return [function_name(f) for f in case.functions if library_op(f) is not None]


def require_func_transforms(case: Case) -> None:
    """NotApplicable where a Function behind fn is one torch.func cannot transform, whatever its code: a custom
    op's register_autograd, or an old-style forward(ctx, ...)."""
    ops = library_ops(case)
    if ops:
        raise NotApplicable(
            f"{', '.join(ops)}: torch.func cannot transform a custom op whose autograd is registered with "
            f"register_autograd (a PyTorch limitation, {FUNC_LIMIT})"
        )
    old = old_style(case.functions)
    if old:
        raise NotApplicable(f"{', '.join(old)}: old-style forward(ctx, ...); torch.func needs forward + setup_context")


@contextlib.contextmanager
def patched_backwards(functions: tuple[type, ...], wrap):
    """Replace each Function's backward (its vjp where it defines one) by wrap(original, name) on the class, for the
    duration of the block; always restored. name is the Function's, or for the Function a custom op's
    register_autograd generates, the op's."""
    saved = []
    try:
        for cls in functions:
            attr = "vjp" if cls.vjp is not torch.autograd.Function.vjp else "backward"
            saved.append((cls, attr, cls.__dict__.get(attr)))
            setattr(cls, attr, staticmethod(wrap(getattr(cls, attr), function_name(cls))))
        yield
    finally:
        for cls, attr, own in saved:
            if own is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, own)


@contextlib.contextmanager
def probe(functions: tuple[type, ...]):
    """Wrap each Function's backward to record its calls as (name, needs_input_grad, positions of the gradients it
    returned); (name, None, ()) when traced. A custom op's register_autograd backward is probed through the Function
    class it generates, by the op's name."""
    calls = []

    def wrap(original, name):
        def counted(ctx, *g):
            out = original(ctx, *g)

            def record_eager():
                returned = tuple(i for i, t in enumerate(as_outputs(out)) if t is not None)
                calls.append((name, tuple(ctx.needs_input_grad), returned))

            # Under torch.compile the backward runs once, at trace time: comptime records that without adding a
            # side effect to the graph (a plain list append inside the traced backward would break the graph).
            comptime(lambda _: calls.append((name, None, ())), record_eager)
            return out

        return counted

    with patched_backwards(functions, wrap):
        yield calls


@dataclass
class Trace:
    """What Dynamo captured while a compiled callable ran: the FX graphs and the graph breaks with their reasons."""

    graphs: list = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)

    def holds_function(self, ops: frozenset[str] = frozenset()) -> bool:
        """A captured graph holds an autograd.Function (Dynamo's autograd_function_apply) or one of the custom ops
        named in `ops` (ns::op), which Dynamo captures as the op itself (torch.ops.ns.op.default)."""
        return any(_is_function(n.target, ops) for g in self.graphs for n in g.graph.nodes)

    def why_not(self, ops: frozenset[str] = frozenset()) -> str:
        if self.breaks:
            return "Dynamo graph break: " + self.breaks[0].strip().splitlines()[0]
        held = "no autograd.Function" + "".join(f" and no {op}" for op in sorted(ops))
        return "Dynamo captured no graph" if not self.graphs else f"{held} in the captured graph"


def _is_function(target, ops: frozenset[str]) -> bool:
    if getattr(target, "__name__", "") == "autograd_function_apply":
        return True
    return isinstance(target, OpOverload | OpOverloadPacket) and schema_name(target) in ops


def compile_traced(f, dynamic: bool | None = None):
    """(torch.compile(f) on the aot_eager backend, its Trace). Dynamo and AOT autograd are where custom Functions
    are traced (and where pytorch #193279 and #192985 live); the backend records every graph it is given."""
    trace = Trace()

    def backend(gm, example_inputs):
        trace.graphs.append(gm)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    torch._dynamo.reset()  # a fresh trace, so that the probe and the counters see this compile alone
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(f, backend=backend, dynamic=dynamic)

    def run(*args, **kwargs):
        out = compiled(*args, **kwargs)
        trace.breaks[:] = list(torch._dynamo.utils.counters["graph_break"])
        return out

    return run, trace


def first_sample(case: Case) -> tuple[str, Inputs]:
    return next(iter(case.samples.items()))
