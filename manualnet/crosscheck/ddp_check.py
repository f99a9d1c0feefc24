"""The ddp check (opt-in): fn inside torch.nn.parallel.DistributedDataParallel on two CPU processes (gloo over the
loopback interface, forked from this one). Every differentiable input of a sample (a Module's parameters included)
becomes an nn.Parameter of a wrapper Module whose loss is sum_k <fn(...)_k, g_k>, with the incoming gradients g_k
drawn per rank; DDP averages the two ranks' gradients, which must equal the one-process gradient for the averaged
incoming gradients (linearity).

DDP's own errors and warnings become the check's note: a parameter outside the autograd graph of the loss stalls
the reduction ("Expected to have finished reduction", at the next forward); "Grad strides do not match bucket view
strides". A backward that returns None for a parameter in the graph does not stall it: DDP reduces zeros there,
which the comparison reports as a wrong gradient."""

import multiprocessing
import os
import queue
import socket
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from manualnet.crosscheck.case import Case, Inputs, NotApplicable, Tally, as_outputs, incoming, key_name, leaves
from manualnet.crosscheck.expected import truth_of

WORLD = 2
TIMEOUT_S = 60  # for the two processes together; gloo's own collective timeout is half of it
# DDP's messages, and what the author of the Function can do about each.
ADVICE = {
    "Expected to have finished reduction": "a parameter reaches the loss outside autograd (.detach(), .data, NumPy): "
    "differentiate through it",
    "Grad strides do not match bucket view strides": "a gradient in another layout than its parameter's: return it "
    "contiguous (or in the parameter's strides)",
}


def require_two_processes() -> None:
    """ValueError naming `checks` unless two processes can run DDP here: torch.distributed with gloo, the fork start
    method, a loopback port."""
    missing = []
    if not dist.is_available() or not dist.is_gloo_available():
        missing.append("torch.distributed with the gloo backend is not available in this torch build")
    if "fork" not in multiprocessing.get_all_start_methods():
        missing.append("processes cannot be forked here")
    try:
        _free_port()
    except OSError as e:
        missing.append(f"no loopback port: {e}")
    if missing:
        raise ValueError(f"checks: 'ddp' expected two processes to start here (gloo, fork, 127.0.0.1), got {missing}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback() -> str | None:
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


def _rank_seed(case: Case, rank: int) -> int:
    return case.seed + 20 + rank


def check_ddp(case: Case, t: Tally) -> None:
    """Under DistributedDataParallel on two CPU processes, the averaged gradients equal the one-process gradients of
    the reference (fn's own without one) for the averaged incoming gradients; DDP's errors and warnings are the
    note."""
    if case.device.type != "cpu":
        raise NotApplicable("CPU only (two gloo processes)")
    by_rank = _run_two(case)
    for name, s in case.samples.items():
        want = _averaged_grads(case, case.want_fn(), s)
        truth = truth_of(case, name, lambda s64: _averaged_grads(case, case.want_fn(), s64))
        errors = {}
        for rank, results in sorted(by_rank.items()):
            got, error, messages, notes = results[name]
            t.notes += [f"{name}: {n}" for n in notes if f"{name}: {n}" not in t.notes]
            for m in messages:
                line = f"{name}: DDP warned: {_with_advice(m.strip().splitlines()[0])}"
                if line not in t.warnings:
                    t.warnings.append(line)
            if error is not None:
                errors.setdefault(error, []).append(str(rank))
                continue
            for key, g in got.items():
                tensor = None if g is None else torch.from_numpy(g)
                what = f"{name} rank {rank} d({t.name(key)})"
                t.compare_grad(what, tensor, want[key], None if truth is None else truth[key])
        for error, ranks in errors.items():
            t.fail(f"{name}: DDP raised on rank {' and '.join(ranks)}: {_with_advice(error)}")


def _with_advice(message: str) -> str:
    advice = next((a for key, a in ADVICE.items() if key in message), None)
    return message[:300] + (f" ({advice})" if advice else "")


def _averaged_grads(case: Case, f, s: Inputs) -> dict:
    """{key: the gradient of sum_k <f(s)_k, (g_k of rank 0 + g_k of rank 1) / 2>}, by plain autograd."""
    ins = leaves(s)
    keys = ins.keys()
    outs = as_outputs(case.call(f, ins))
    per_rank = [incoming(outs, _rank_seed(case, r)) for r in range(WORLD)]
    used = [k for k, g in enumerate(per_rank[0]) if g is not None and outs[k].requires_grad]
    gs = [sum(p[k] for p in per_rank) / WORLD for k in used]
    got = torch.autograd.grad([outs[k] for k in used], [ins.get(k) for k in keys], gs, allow_unused=True)
    return dict(zip(keys, got, strict=True))


class _Wrapper(nn.Module):
    """The differentiable inputs of one sample as parameters; forward() is sum_k <fn(...)_k, g_k>."""

    def __init__(self, case: Case, s: Inputs, gs: list) -> None:
        super().__init__()
        self.case, self.sample, self.gs, self.keys = case, s, gs, s.keys()
        self.inputs = nn.ParameterList([nn.Parameter(s.get(k).detach().clone()) for k in self.keys])

    def forward(self) -> torch.Tensor:
        outs = as_outputs(self.case.call(self.case.fn, self.sample.put(dict(zip(self.keys, self.inputs, strict=True)))))
        return sum((o * g).sum() for o, g in zip(outs, self.gs, strict=True) if g is not None and o.requires_grad)


def _run_two(case: Case) -> dict:
    """{rank: {sample name: (gradients as NumPy arrays or None by key, DDP's error or None, DDP's warnings)}}, from
    two forked processes; a failure to finish within TIMEOUT_S raises."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_worker, args=(case, rank, port, results), daemon=True) for rank in range(WORLD)]
    for p in procs:
        p.start()
    by_rank = {}
    try:
        for _ in procs:
            rank, got = results.get(timeout=TIMEOUT_S)
            by_rank[rank] = got
    except queue.Empty:
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"the two DDP processes did not report within {TIMEOUT_S} s (exit codes {codes})") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    failed = [got for got in by_rank.values() if isinstance(got, str)]
    if failed:
        raise RuntimeError(f"a DDP process could not start: {failed[0]}")
    return by_rank


def _worker(case: Case, rank: int, port: int, results) -> None:
    """One rank: join the process group, run every sample under DDP twice (DDP reports an unfinished reduction at
    the second forward), send back the first iteration's gradients, DDP's error and warnings."""
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    if _loopback() is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback())
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=timedelta(seconds=TIMEOUT_S // 2),
        )
    except Exception as e:
        results.put((rank, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"))
        return
    try:
        results.put((rank, {name: _one_sample(case, s, rank) for name, s in case.samples.items()}))
    finally:
        dist.destroy_process_group()


def _one_sample(case: Case, s: Inputs, rank: int) -> tuple[dict, str | None, list[str], list[str]]:
    """(the first iteration's gradients by key, DDP's error, DDP's warnings, notes) of one sample on one rank."""
    with torch.no_grad():
        gs = incoming(as_outputs(case.call(case.fn, s)), _rank_seed(case, rank))
    module = _Wrapper(case, s, gs)
    grads, error, notes, bad = {}, None, [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ddp = nn.parallel.DistributedDataParallel(module)
            for step in range(2):
                ddp().backward()
                if step == 0:
                    params = dict(zip(module.keys, module.inputs, strict=True))
                    grads = {k: None if p.grad is None else p.grad.detach().numpy().copy() for k, p in params.items()}
                    strided = [k for k, p in params.items() if p.grad is not None and not _same_layout(p.grad, p)]
                    bad = [key_name(k, case.names) for k in strided]
                ddp.zero_grad(set_to_none=True)
        except Exception as e:
            error = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    messages = [str(w.message) for w in caught if _from_ddp(w)]
    stride = "Grad strides do not match bucket view strides"
    if error is None and not bad and any(stride in m for m in messages):
        # DDP compares strides exactly; on a dimension of size 1 they differ without any difference in memory.
        messages = [m for m in messages if stride not in m]
        notes.append(f"DDP's warning '{stride}' for a dimension of size 1 only (the same memory layout): not counted")
    return grads, error, messages, notes


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same strides on every dimension of size > 1."""
    return all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape, strict=True) if n > 1)


def _from_ddp(w: warnings.WarningMessage) -> bool:
    """A warning of DDP's: raised in its Python code or named in ADVICE (the reducer's C++ warnings)."""
    where = str(w.filename).replace("\\", "/")
    return "torch/nn/parallel" in where or "torch/distributed" in where or any(k in str(w.message) for k in ADVICE)
