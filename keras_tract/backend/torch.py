"""PyTorch adapters."""

import keras
import torch


def compile_function(model, fn, jit_compile=False):
    """Returns `fn` run under `torch.no_grad()`, through `torch.compile` when `jit_compile`."""
    del model
    compiled = torch.compile(fn) if jit_compile else fn

    def call(*args):
        with torch.no_grad():
            return compiled(*args)

    return call


def all_finite(loss, grads):
    return torch.stack([torch.isfinite(t).all() for t in [loss, *grads]]).all()


class TrainStep:
    """`train_step` for PyTorch: autograd on the student; the optimizer runs only on finite gradients."""

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with torch.no_grad():
            prepared = self.prepare_step(x, labels)
        self.zero_grad()
        loss = self.step_loss(prepared, labels)
        loss.backward()
        variables = self.trainable_variables
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            finite = all_finite(loss, [g for g in grads if g is not None])
            if finite:
                self.optimizer.apply(grads, variables)
            return self.end_step(finite, loss.detach())


def lerp_variables(targets, sources, rate):
    """`t <- t + rate (s - t)` in place, one fused op per variable."""
    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.value.lerp_(s.value, rate.to(t.value.dtype))
