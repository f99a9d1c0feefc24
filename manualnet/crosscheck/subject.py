"""A Function under test: what check_function needs to know about one Function, kept together so that a corpus, a
test and a script name it once and run it with the options of the moment.

    NET = FunctionUnderTest(two_layer_net, reference_net, net_inputs, {"functions": (TwoLayerNetFn,)})
    NET.check(profile="quick").assert_ok()      # or, in a test: crosscheck(NET, profile="quick")
"""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from manualnet.crosscheck.report import Report


def _check_function():
    from manualnet.crosscheck import check_function  # the package imports this module first

    return check_function


@dataclass(frozen=True)
class FunctionUnderTest:
    """fn, the reference it is compared with, make_inputs, and this Function's options of check_function (e.g.
    functions, kinks, batch_args: what is true of the Function whatever is checked)."""

    fn: Callable | nn.Module
    reference: Callable | nn.Module | None
    make_inputs: Callable
    options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = [
            name
            for name, p in inspect.signature(_check_function()).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        if not isinstance(self.options, Mapping):
            unknown = type(self.options).__name__
        else:
            unknown = [name for name in self.options if name not in known]
        if unknown:
            raise ValueError(f"options: expected a dict of check_function's options {known}, got {unknown}")

    def check(self, **options) -> Report:
        """check_function(fn, reference, make_inputs, **options) with this Function's options under the given ones
        (a given option wins)."""
        return _check_function()(self.fn, self.reference, self.make_inputs, **{**self.options, **options})
