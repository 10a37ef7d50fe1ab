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


def conv(x, kernel, bias=None, padding="valid"):
    """A stride-1 convolution of channels-last `x` with a `(kh, kw, I, O)` kernel (odd kh, kw), plus `bias`.

    It runs on the channels-first view of the same memory, PyTorch's `channels_last` format, which its
    kernels take directly (Keras' channels-last `ops.conv` copies the activations twice per call), with
    the bias added inside the convolution.
    """
    pad = (kernel.shape[0] // 2, kernel.shape[1] // 2) if padding == "same" else 0
    y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), bias, padding=pad)
    return y.permute(0, 2, 3, 1)


def group_norm(x, groups, gamma, beta, eps):
    """PyTorch's fused group normalization of channels-last `x` (one kernel instead of about ten passes)."""
    order = (0, x.ndim - 1, *range(1, x.ndim - 1))
    y = torch.nn.functional.group_norm(x.permute(order), groups, gamma, beta, eps)
    return y.permute(0, *range(2, x.ndim), 1)


def data_parallel(devices=None):
    raise ValueError("Data-parallel training needs KERAS_BACKEND=jax or tensorflow: Keras has no data-parallel "
                     "fit() for PyTorch (wrap the student in torch DistributedDataParallel in a loop of your own).")


def num_replicas():
    return 1


def all_finite(loss, grads):
    """Whether `loss` and every gradient are finite, from one fused max-abs over all of them."""
    tensors = [t for t in [loss.reshape(1), *grads] if t.numel()]
    return torch.stack(torch._foreach_norm(tensors, float("inf"), dtype=torch.float32)).isfinite().all()


def split(tree, k):
    """Every `(B, ...)` tensor of `tree` cut into `k` equal parts along the batch; a list of `k` trees."""
    if tree is None:
        return [None] * k
    if isinstance(tree, (tuple, list)):
        return list(zip(*(split(t, k) for t in tree)))
    return list(torch.chunk(tree, k))


class TrainStep:
    """`train_step` for PyTorch: autograd on the student; the optimizer runs only on finite gradients."""

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        k = self.micro_batches
        with torch.no_grad():
            draws = self.draw(tuple(x.shape))
        self.zero_grad()
        total = 0.0
        for x_part, labels_part, draws_part in split((x, labels, draws), k):
            with torch.no_grad():
                prepared = self.prepare_step(x_part, labels_part, draws_part)
            loss = self.step_loss(prepared, labels_part)
            (loss / k).backward()
            total = total + loss.detach()
        loss = total / k
        variables = self.trainable_variables
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            finite = all_finite(loss, [g for g in grads if g is not None])
            if finite:
                self.optimizer.apply(grads, variables)
            return self.end_step(finite, loss)


def lerp_variables(targets, sources, rate):
    """`t <- t + rate (s - t)` in place, one fused op over all variables (`rate` stays on the device)."""
    with torch.no_grad():
        targets = [t.value for t in targets]
        rates = {dtype: rate.to(dtype) for dtype in {t.dtype for t in targets}}
        torch._foreach_lerp_(targets, [s.value for s in sources], [rates[t.dtype] for t in targets])
