"""JAX adapters, `keras.distribution.DataParallel` included."""

import contextlib
import os

import jax
import jax.numpy as jnp
import keras


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


def all_finite(loss, grads):
    return jnp.logical_and(jnp.all(jnp.isfinite(loss)),
                           jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in grads])))


def split(tree, k):
    """Every `(B, ...)` array of `tree` as `(k, B / k, ...)`."""
    return jax.tree.map(lambda t: t.reshape((k, t.shape[0] // k) + t.shape[1:]), tree)


class TrainStep:
    """`train_step` for JAX: the model's stateful step methods run under `keras.StatelessScope`s."""

    def _mapping(self, trainable, non_trainable, optimizer, metrics):
        return [*zip(self.trainable_variables, trainable),
                *zip(self.non_trainable_variables, non_trainable),
                *zip(self.optimizer.variables, optimizer),
                *zip(self.metrics_variables, metrics)]

    def train_step(self, state, data):
        trainable, non_trainable, optimizer, metrics = state
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with keras.StatelessScope(self._mapping(trainable, non_trainable, optimizer, metrics)) as scope:
            draws = self.draw(x.shape)
        non_trainable = [scope.get_current_value(v) for v in self.non_trainable_variables]

        def loss_fn(values, prepared, labels):
            with keras.StatelessScope(self._mapping(values, non_trainable, optimizer, metrics)):
                return self.step_loss(prepared, labels)

        def micro_step(micro):
            x, labels, draws = micro
            with keras.StatelessScope(self._mapping(trainable, non_trainable, optimizer, metrics)):
                prepared = self.prepare_step(x, labels, draws)
            return jax.value_and_grad(loss_fn)(trainable, prepared, labels)

        k = self.micro_batches
        if k == 1:
            loss, grads = micro_step((x, labels, draws))
        else:
            def accumulate(total, micro):
                return jax.tree.map(jnp.add, total, micro_step(micro)), None

            zeros = (jnp.zeros((), "float32"), [jnp.zeros_like(t) for t in trainable])
            total, _ = jax.lax.scan(accumulate, zeros, split((x, labels, draws), k))
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
