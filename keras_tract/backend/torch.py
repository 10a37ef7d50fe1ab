"""PyTorch adapters."""

import keras
import numpy as np
import torch
from keras.src.backend.common import global_state
from keras.src.backend.torch.core import get_device
from keras.src.backend.torch.optimizers.torch_adam import Adam as KerasAdam

# Keras' thread-local scopes that every PyTorch op and variable read looks up.
_SCOPES = ("torch_device", "stateless_scope", "autocast_scope")


def fill_scope_defaults():
    """Sets Keras' device, stateless and autocast scopes that this thread never entered to None, the value
    Keras reads for them then (and leaves after a scope exits). An unset one costs a caught AttributeError
    at each lookup, about ten thousand a distillation step: a variable read takes 6.2 us instead of 1.2."""
    tracker = global_state.GLOBAL_STATE_TRACKER
    for name in _SCOPES:
        if not hasattr(tracker, name):
            setattr(tracker, name, None)


_CONSTANTS = {}


def constant(value, dtype):
    """`value` (a number or an array) as a `dtype` tensor on Keras' device, made once and kept.

    Keras copies a host number or array given to an op to the device at every call: on a GPU each
    copy waits for all the work queued before it, so a step that makes them never runs ahead.
    """
    array = np.asarray(value)
    key = (get_device(), str(dtype), array.dtype.str, array.shape, array.tobytes())
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        tensor = _CONSTANTS[key] = keras.ops.convert_to_tensor(array, dtype)
    return tensor


def compile_function(model, fn, jit_compile=False):
    """Returns `fn` run under `torch.no_grad()`, through `torch.compile` when `jit_compile`."""
    del model
    compiled = torch.compile(fn) if jit_compile else fn

    def call(*args):
        fill_scope_defaults()
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


def average_pool2(x):
    """The mean of each 2x2 block of channels-last `x` `(B, H, W, C)`, pooled on the channels-first view of the
    same memory (Keras' `ops.average_pool` copies the activations to channels-first first)."""
    return torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)


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
    """Whether `loss` and every gradient are finite, as a device tensor (nothing waits for it): their 2-norms
    accumulated in float64 (one fused pass), where the squares of finite float32 values cannot overflow."""
    tensors = [t for t in [loss.reshape(1), *grads] if t.numel()]
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float64)).isfinite().all()


def _adam_slots(optimizer, variables):
    """The parameters, momentums, velocities and (infinite) step counts of a fused Adam update of `variables`, or None
    where `optimizer.apply` does more than Adam's update: not Keras' own Adam, amsgrad, weight decay,
    clipping, the optimizer's EMA, gradient accumulation, loss scaling, constraints, or weights not float32
    (each stays with Keras' code)."""
    plain = (type(optimizer) is KerasAdam and not optimizer.amsgrad and optimizer.weight_decay is None
             and optimizer.clipnorm is None and optimizer.clipvalue is None and optimizer.global_clipnorm is None
             and not optimizer.use_ema and not optimizer.gradient_accumulation_steps
             and optimizer.loss_scale_factor is None
             and all(isinstance(b, float) for b in (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon))
             and all(v.dtype == "float32" and v.constraint is None and not v.overwrite_with_gradient
                     and v.value.device.type in ("cpu", "cuda") for v in variables))
    if not plain:
        return None
    slot = lambda slots: [slots[optimizer._get_variable_index(v)].value for v in variables]  # noqa: E731
    no_correction = [constant(np.inf, "float32")] * len(variables)
    return [v.value for v in variables], slot(optimizer._momentums), slot(optimizer._velocities), no_correction


def apply_gradients(trainer, grads, variables, finite):
    """`trainer.optimizer.apply(grads, variables)` where the device tensor `finite` is true; Keras' plain
    Adam as PyTorch's fused Adam kernel.

    Keras' Adam on PyTorch makes ten `_foreach` passes over the weights and copies four host numbers to the
    device; the fused kernel makes one pass (five times faster on a CPU) and skips the update on the device
    where `finite` is false, so the host never waits for the gradients. It runs Keras' update exactly: its
    bias corrections are off (a step count of infinity) and applied in the learning rate instead,
    `lr sqrt(1 - beta_2^t) / (1 - beta_1^t)` times `m / (sqrt(v) + epsilon)`, epsilon outside the
    correction as in Keras (PyTorch's own Adam puts it inside). Other optimizers run Keras' code, after
    the host reads `finite`.
    """
    optimizer = trainer.optimizer
    slots = trainer.per_fit("adam_slots", lambda: _adam_slots(optimizer, variables)) if optimizer.built else None
    if slots is None or any(g is None for g in grads):
        if finite:
            optimizer.apply(grads, variables)
        return
    params, momentums, velocities, no_correction = slots
    iterations = optimizer.iterations
    t = iterations.value.to(torch.float32) + 1
    lr = keras.ops.convert_to_tensor(optimizer.learning_rate, "float32")
    lr = lr * torch.sqrt(1 - optimizer.beta_2**t) / (1 - optimizer.beta_1**t)
    torch._fused_adam_(params, grads, momentums, velocities, [], no_correction, lr=lr, beta1=optimizer.beta_1,
                       beta2=optimizer.beta_2, weight_decay=0.0, eps=optimizer.epsilon, amsgrad=False,
                       maximize=False, found_inf=(~finite).to(torch.float32))
    iterations.assign(iterations.value + finite.to(iterations.value.dtype))


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
        fill_scope_defaults()
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        k = self.micro_batches
        variables = self.per_fit("trainable_variables", lambda: list(self.trainable_variables))
        params = self.per_fit("parameters", lambda: [v.value for v in variables])
        with torch.no_grad():
            draws = self.draw(tuple(x.shape))
        for p in params:
            p.grad = None
        total = 0.0
        for x_part, labels_part, draws_part in split((x, labels, draws), k):
            with torch.no_grad():
                prepared = self.prepare_step(x_part, labels_part, draws_part)
            loss = self.step_loss(prepared, labels_part)
            (loss / k).backward()
            total = total + loss.detach()
        loss = total / k
        grads = [p.grad for p in params]
        with torch.no_grad():
            finite = all_finite(loss, [g for g in grads if g is not None])
            apply_gradients(self, grads, variables, finite)
            return self.end_step(finite, loss)


def lerp_variables(targets, sources, rate):
    """`t <- t + rate (s - t)` in place, one fused op over all variables (`rate` stays on the device)."""
    with torch.no_grad():
        targets = [t.value for t in targets]
        rates = {dtype: rate.to(dtype) for dtype in {t.dtype for t in targets}}
        torch._foreach_lerp_(targets, [s.value for s in sources], [rates[t.dtype] for t in targets])
