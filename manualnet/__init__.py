"""manualnet: a two-layer classifier whose backward pass (and forward-mode jvp) is written by hand, and the tools that
check it."""

from manualnet.functional import dropout_mask, softmax_cross_entropy, two_layer_net
from manualnet.hvp import loss_hvp, sharpness
from manualnet.module import TwoLayerNet

__all__ = ["TwoLayerNet", "dropout_mask", "loss_hvp", "sharpness", "softmax_cross_entropy", "two_layer_net"]
