"""The smallest correct new-style Function, shared by the harness's tests: y = x^3 with its backward by hand (equal to
autograd's, so only the probe can tell which one ran); torch.func can run it, and it has neither a vmap rule nor a
jvp."""

import torch


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x**2
