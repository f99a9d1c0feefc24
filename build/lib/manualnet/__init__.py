"""manualnet: a two-layer classifier whose backward pass is written by hand, and the tools that check it."""

from manualnet.functional import softmax_cross_entropy, two_layer_net
from manualnet.module import TwoLayerNet

__all__ = ["TwoLayerNet", "softmax_cross_entropy", "two_layer_net"]
