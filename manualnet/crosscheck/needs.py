"""What a check needs of a Case before it can run, in one place: NEEDS maps a need's name to its predicate, which
raises NotApplicable with the reason when the case lacks it; Check pairs a check function with the names of its needs.

    CHECKS = {"jvp": Check(check_jvp, needs=("func", "jvp")), ...}   # manualnet.crosscheck.checks

A need is decided from the case alone (fn's Function classes, the reference, the dtype, the device, the samples'
inputs), never by running fn: what shows only when fn runs (an output count, a Dynamo refusal) stays in the check.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from manualnet.crosscheck.case import Case, NotApplicable, Tally, require_func_transforms
from manualnet.crosscheck.expected import need_reference, require_jvp
from manualnet.crosscheck.op_checks import require_op


def need_float64(case: Case) -> None:
    if case.dtype != torch.float64:
        raise NotApplicable("finite differences run in float64 only")


def need_smooth_sample(case: Case) -> None:
    if all(name in case.kinks for name in case.samples):
        raise NotApplicable("every sample is a kink (kinks=)")


def need_two_inputs(case: Case) -> None:
    if any(len(s.keys()) < 2 for s in case.samples.values()):
        raise NotApplicable("one differentiable input")


def no_vmap_rule(case: Case) -> str | None:
    """Why torch.func.vmap cannot run fn's Functions (neither generate_vmap_rule nor a vmap staticmethod), or None."""
    no_rule = [
        f.__name__ for f in case.functions if not f.generate_vmap_rule and f.vmap is torch.autograd.Function.vmap
    ]
    return f"no vmap rule ({', '.join(no_rule)}: set generate_vmap_rule = True or define vmap)" if no_rule else None


def require_vmap_rule(case: Case) -> None:
    reason = no_vmap_rule(case)
    if reason:
        raise NotApplicable(reason)


def need_batch_args(case: Case) -> None:
    """Every sample has a tensor of at least one dimension at some position of batch_args (the dim 0 to vmap)."""
    for s in case.samples.values():
        batch = [i for i in case.batch_args if i < len(s.args) and isinstance(s.args[i], Tensor)]
        if not batch or any(s.args[i].dim() == 0 for i in batch):
            raise NotApplicable(f"no batched positional input at batch_args {list(case.batch_args)}")


def first_of_each_shape(case: Case) -> list[str]:
    """The names of the first sample of each distinct set of tensor shapes, in order."""
    shapes = {}
    for name, s in case.samples.items():
        shapes.setdefault(tuple(tuple(x.shape) for x in s.tensors()), name)
    return list(shapes.values())


def need_two_shapes(case: Case) -> None:
    """Two samples of different shapes (the first two such) with the same differentiable inputs."""
    names = first_of_each_shape(case)
    if len(names) < 2:
        raise NotApplicable("one sample shape (dynamic shapes need two)")
    if case.samples[names[0]].keys() != case.samples[names[1]].keys():
        raise NotApplicable("the samples differ in which inputs are differentiable")


def need_cpu(case: Case) -> None:
    if case.device.type != "cpu":
        raise NotApplicable("CPU only (GPU kernels may accumulate in any order)")


# A need's name and its predicate; the name is what a Check lists.
NEEDS: dict[str, Callable[[Case], None]] = {
    "reference": need_reference,  # a reference to compare with (reference=None leaves it out)
    "func": require_func_transforms,  # torch.func can transform fn's Functions (forward + setup_context)
    "jvp": require_jvp,  # fn's Functions define jvp
    "vmap_rule": require_vmap_rule,  # fn's Functions have a vmap rule
    "batch_args": need_batch_args,  # a batched positional input at batch_args in every sample
    "float64": need_float64,  # finite differences: the case's dtype is float64
    "smooth_sample": need_smooth_sample,  # a sample not named in kinks
    "two_inputs": need_two_inputs,  # two differentiable inputs in every sample
    "two_shapes": need_two_shapes,  # two sample shapes with the same differentiable inputs
    "cpu": need_cpu,  # the case's device is the CPU
    "op": require_op,  # fn is a custom op (one overload): what torch.library.opcheck takes
}


@dataclass(frozen=True)
class Check:
    """A named check: run(case, tally) records what it finds; needs names the NEEDS that decide, before it runs and
    in order, whether it applies (the first unmet one makes it n/a with its reason)."""

    run: Callable[[Case, Tally], None]
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [n for n in self.needs if n not in NEEDS] if isinstance(self.needs, tuple) else [self.needs]
        if unknown:
            raise ValueError(f"needs: expected a tuple of names from {list(NEEDS)}, got {unknown}")

    def __call__(self, case: Case, tally: Tally) -> None:
        """Raise NotApplicable for the first unmet need, else run the check."""
        for need in self.needs:
            NEEDS[need](case)
        self.run(case, tally)
