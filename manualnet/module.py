"""TwoLayerNet: the nn.Module holding w1, b1, w2, b2 and calling the hand-written Functions."""

import math

import torch
from torch import Tensor, nn

from manualnet.functional import softmax_cross_entropy, two_layer_net
from manualnet.validate import check_int


class TwoLayerNet(nn.Module):
    """x -> affine(w1, b1) -> ReLU -> affine(w2, b2) -> scores, with w1 (D,H), b1 (H,), w2 (H,C), b2 (C,).

    Initialisation (reset_parameters): w1 ~ N(0, 2/D) (He, for the ReLU that follows), w2 ~ N(0, 1/H), biases 0.
    Pass `seed` for the same weights on every construction; otherwise the global torch RNG is used.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_classes: int,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden), ("num_classes", num_classes)):
            check_int(name, value, 1)
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes
        kw = {"device": device, "dtype": dtype}
        # w1 (D,H) and w2 (H,C) are stored as nn.Linear stores its weights, (out, in) in memory, and seen transposed:
        # the CPU's products x w1, dW1 and x2 w2 are faster in that layout at the shapes users run, and the backward
        # returns dW1, dW2 in it (docs/performance.md).
        self.w1 = nn.Parameter(torch.empty(hidden, in_features, **kw).T)
        self.b1 = nn.Parameter(torch.empty(hidden, **kw))
        self.w2 = nn.Parameter(torch.empty(num_classes, hidden, **kw).T)
        self.b2 = nn.Parameter(torch.empty(num_classes, **kw))
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw w1 ~ N(0, 2/D), w2 ~ N(0, 1/H) and zero the biases; `seed` makes the draw repeatable."""
        gen = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)
        # Drawn on the CPU so that a seed gives the same weights on every device.
        w1 = torch.randn(self.w1.shape, generator=gen, dtype=torch.float64) * math.sqrt(2.0 / self.in_features)
        w2 = torch.randn(self.w2.shape, generator=gen, dtype=torch.float64) * math.sqrt(1.0 / self.hidden)
        self.w1.copy_(w1)
        self.w2.copy_(w2)
        self.b1.zero_()
        self.b2.zero_()

    def forward(self, x: Tensor, m: Tensor | None = None) -> Tensor:
        """Scores (N,C) for x of shape (N, *) whose trailing dimensions hold in_features values (e.g. (N,3,32,32)).

        m: the hidden layer's dropout mask (N,H) (manualnet.dropout_mask draws one), or None: no dropout.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.in_features:
            raise ValueError(f"x: expected shape (N, ...) with {self.in_features} values per row, got {tuple(x.shape)}")
        return two_layer_net(x.flatten(1), self.w1, self.b1, self.w2, self.b2, m)

    def loss(self, x: Tensor, y: Tensor, m: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
        """Mean softmax cross-entropy of the scores for x (with the dropout mask m, if any) against int64 labels y
        (N,), with the target smoothed by label_smoothing (F.cross_entropy's)."""
        return softmax_cross_entropy(self(x, m), y, label_smoothing)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, hidden={self.hidden}, num_classes={self.num_classes}"
