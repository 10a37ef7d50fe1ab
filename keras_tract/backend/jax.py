"""JAX adapters, `keras.distribution.DataParallel` included."""

import contextlib
import functools
import os

import jax
import jax.numpy as jnp
import keras
from jax.experimental import multihost_utils


def compile_function(model, fn, jit_compile=True):
    """Returns `f(*args) = fn(*args)` jitted, with `model`'s variables passed at call time.

    The variables travel as arguments under a `keras.StatelessScope`, so later
    weight updates are seen and nothing is baked in as a constant.
    """
    variables = list(model.variables)

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    compiled = jax.jit(stateless) if jit_compile else stateless
    return lambda *args: compiled([v.value for v in variables], *args)


def _conv(x, kernel, pads):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cpu_conv(x, kernel, pads):
    return _conv(x, kernel, pads)


def _cpu_conv_fwd(x, kernel, pads):
    return _conv(x, kernel, pads), (x, kernel)


def _cpu_conv_bwd(pads, residuals, dy):
    """Both gradients in forms XLA:CPU runs as library calls, inside loops too.

    The input gradient is the forward convolution of the padded `dy` with the flipped, transposed kernel.
    From 16x16 pixels up the kernel gradient is one matmul per tap, `dk[i, j] = x^T dy_ij` over all
    (batch, pixel) rows, with `dy_ij` the padded `dy` shifted by the tap; below, it is a convolution
    whose kernel is the whole output gradient (input channels as the batch, the batch as the features).
    The same values; the convolution costs XLA:CPU two to three forwards at 32x32, and below 16x16 at
    most about a millisecond more (batch 16), where its fewer operations compile faster.
    """
    x, kernel = residuals
    kh, kw, channels, features = kernel.shape
    height, width = x.shape[1:3]
    back = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip((kh, kw), pads))
    dx = _conv(dy, jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2)), back)
    if height * width < 16 * 16:
        dkernel = _conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), pads)
        return dx, jnp.transpose(dkernel, (1, 2, 0, 3))
    dy = jnp.pad(dy, ((0, 0), *back, (0, 0)))
    rows = jnp.transpose(x.reshape(-1, channels))
    taps = [rows @ dy[:, kh - 1 - i:kh - 1 - i + height, kw - 1 - j:kw - 1 - j + width].reshape(-1, features)
            for i in range(kh) for j in range(kw)]
    return dx, jnp.stack(taps).reshape(kernel.shape)


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


def conv(x, kernel, bias=None, padding="valid"):
    """A stride-1 convolution of channels-last `x` with a `(kh, kw, I, O)` kernel (odd kh, kw), plus `bias`.

    On CPUs the gradient is our own: XLA:CPU runs the convolutions of JAX's own gradient as library
    calls only after rewriting them into `NHWC`/`HWIO` form, and inside a loop (`lax.scan` over
    micro-batches) it does not, so they ran as naive loops: a micro-batched step cost 4.9x a
    whole-batch one. Ours is forward convolutions and, from 16x16 pixels up, matmuls: library calls
    everywhere (the same values; `_cpu_conv_bwd`). GPUs keep JAX's gradient, which XLA maps to cuDNN's backward kernels.
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    pads = tuple((k // 2, k // 2) if padding == "same" else (0, 0) for k in kernel.shape[:2])
    y = (_cpu_conv if jax.default_backend() == "cpu" else _conv)(x, kernel, pads)
    return y if bias is None else y + bias


def data_parallel(devices=None):
    """Sets `keras.distribution.DataParallel` over `devices` (default every device, of every host
    once the `KERAS_DISTRIBUTION_*` variables name several processes); models made afterwards
    train data-parallel, the batch split along its first axis. Returns a no-op scope."""
    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
        keras.distribution.initialize()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return contextlib.nullcontext()


def num_replicas():
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def process_index():
    return jax.process_index()


def process_count():
    return jax.process_count()


def barrier(name):
    """Waits until every process reaches `barrier(name)` (a collective over all devices)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def reached_preemption_sync_point(step):
    """True at the step every process stops at after a preemption notice (SIGTERM to any process,
    which JAX's distributed runtime takes; `step` must be given at every step)."""
    return multihost_utils.reached_preemption_sync_point(step)


def global_batch_size(local):
    """The global batch an input batch of `local` examples belongs to: `local` times the process count
    when every process feeds its own share (a distribution with `auto_shard_dataset=False`)."""
    distribution = keras.distribution.distribution()
    own_share = distribution is not None and jax.process_count() > 1 and not distribution.auto_shard_dataset
    return local * jax.process_count() if own_share else local


def all_finite(loss, grads):
    return jnp.logical_and(jnp.all(jnp.isfinite(loss)),
                           jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in grads])))


def split(tree, k):
    """Every `(B, ...)` array of `tree` as `(k, B / k, ...)`."""
    return jax.tree.map(lambda t: t.reshape((k, t.shape[0] // k) + t.shape[1:]), tree)


class TrainStep:
    """`train_step` for JAX: the model's stateful step methods run under `keras.StatelessScope`s.

    Every non-trainable value a method changes (the step's random draws, dropout seed states,
    counters, metrics) is carried out of its scope into the next one and out of the step, through
    the gradient (`has_aux`) and the micro-batch loop alike.
    """

    def _mapping(self, trainable, non_trainable, optimizer, metrics):
        return [*zip(self.trainable_variables, trainable),
                *zip(self.non_trainable_variables, non_trainable),
                *zip(self.optimizer.variables, optimizer),
                *zip(self.metrics_variables, metrics)]

    def _stateless(self, fn, trainable, non_trainable, optimizer, metrics):
        """`fn()` under a scope of these values; returns its result and the non-trainable values after it."""
        with keras.StatelessScope(self._mapping(trainable, non_trainable, optimizer, metrics)) as scope:
            result = fn()
        return result, [scope.get_current_value(v) for v in self.non_trainable_variables]

    def train_step(self, state, data):
        trainable, non_trainable, optimizer, metrics = state
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        draws, non_trainable = self._stateless(lambda: self.draw(x.shape), trainable, non_trainable, optimizer,
                                               metrics)

        def loss_fn(values, non_trainable, prepared, labels):
            return self._stateless(lambda: self.step_loss(prepared, labels), values, non_trainable, optimizer,
                                   metrics)

        def micro_step(non_trainable, micro):
            x, labels, draws = micro
            prepared, non_trainable = self._stateless(lambda: self.prepare_step(x, labels, draws), trainable,
                                                      non_trainable, optimizer, metrics)
            (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                trainable, non_trainable, prepared, labels)
            return non_trainable, (loss, grads)

        k = self.micro_batches
        if k == 1:
            non_trainable, (loss, grads) = micro_step(non_trainable, (x, labels, draws))
        else:
            def accumulate(carry, micro):
                non_trainable, total = carry
                non_trainable, part = micro_step(non_trainable, micro)
                return (non_trainable, jax.tree.map(jnp.add, total, part)), None

            zeros = (jnp.zeros((), "float32"), [jnp.zeros_like(t) for t in trainable])
            (non_trainable, total), _ = jax.lax.scan(accumulate, (non_trainable, zeros),
                                                     split((x, labels, draws), k))
            loss, grads = jax.tree.map(lambda t: t / k, total)
        finite = all_finite(loss, grads)
        new_trainable, new_optimizer = self.optimizer.stateless_apply(optimizer, grads, trainable)
        trainable = [jnp.where(finite, n, o) for n, o in zip(new_trainable, trainable)]
        optimizer = [jnp.where(finite, n, o) for n, o in zip(new_optimizer, optimizer)]
        with keras.StatelessScope(self._mapping(trainable, non_trainable, optimizer, metrics)) as scope:
            logs = self.end_step(finite, loss)
        non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]
        metrics = [scope.get_current_value(v) for v in self.metrics_variables]
        return logs, (trainable, non_trainable, optimizer, metrics)
