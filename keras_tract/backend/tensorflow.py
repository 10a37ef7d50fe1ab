"""TensorFlow adapters, `tf.distribute.MirroredStrategy` included."""

import json
import os

import keras
import tensorflow as tf


def compile_function(model, fn, jit_compile=True):
    """Returns `fn` as a `tf.function` (XLA when `jit_compile`); variables are read at call time."""
    del model  # tf.function captures variables by reference
    return tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)


def all_finite(loss, grads):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in [loss, *grads]])


def split(tree, k):
    """Every `(B, ...)` tensor of `tree` as `(k, B / k, ...)`; None stays None."""
    return tf.nest.map_structure(
        lambda t: None if t is None else tf.reshape(t, tf.concat([[k, tf.shape(t)[0] // k], tf.shape(t)[1:]], 0)),
        tree)


def data_parallel(devices=None):
    """A `tf.distribute.MirroredStrategy` scope over `devices` (default the visible GPUs, else the
    CPU); models made or loaded inside it train data-parallel, one replica per device.

    One host only: under `MultiWorkerMirroredStrategy` Keras 3's TensorFlow `fit()` fails (even for a
    `Dense` model: "Attempt to convert a value (PerReplica:...) with an unsupported type"), so a
    `TF_CONFIG` naming several workers is refused."""
    workers = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        raise ValueError(f"TF_CONFIG names {len(workers)} workers, but Keras 3's TensorFlow fit() fails under "
                         "MultiWorkerMirroredStrategy; train on several hosts with KERAS_BACKEND=jax and the "
                         "KERAS_DISTRIBUTION_* variables.")
    return tf.distribute.MirroredStrategy(devices).scope()


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


class TrainStep:
    """`train_step` for TensorFlow: GradientTape; the optimizer runs only on finite gradients.

    Under a `tf.distribute` strategy with R replicas each replica draws the random values of the
    whole global batch and keeps its own slice, and the replicas average their gradients before
    the finiteness check, the clipping and the update: the step equals the single-device step on
    the global batch.
    """

    def _micro_step(self, x, labels, draws):
        prepared = self.prepare_step(x, labels, draws)
        with tf.GradientTape() as tape:
            loss = self.step_loss(prepared, labels)
        return loss, tape.gradient(loss, self.trainable_variables, unconnected_gradients="zero")

    def _gradients(self, x, labels, draws):
        k = self.micro_batches
        if k == 1:
            return self._micro_step(x, labels, draws)
        micro, total = split((x, labels, draws), k), None
        for i in range(k):  # unrolled: a graph's `tf.while_loop` ran two micro-batches at 1.8x one batch
            part = tf.nest.map_structure(lambda t, i=i: None if t is None else t[i], micro)
            if total is not None:  # micro-batch i starts once i - 1's gradients exist: one live at a time
                with tf.control_dependencies(tf.nest.flatten(total)):
                    part = tf.nest.map_structure(lambda t: None if t is None else tf.identity(t), part)
            result = self._micro_step(*part)
            total = result if total is None else tf.nest.map_structure(tf.add, total, result)
        return tf.nest.map_structure(lambda t: t / k, total)

    def _apply(self, finite, grads):
        keras.ops.cond(finite, lambda: self.optimizer.apply(grads, self.trainable_variables), lambda: None)

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not tf.distribute.has_strategy():
            draws = self.draw((tf.shape(x)[0],) + tuple(x.shape[1:]))
            loss, grads = self._gradients(x, labels, draws)
            finite = all_finite(loss, grads)
            self._apply(finite, grads)
            return self.end_step(finite, loss)

        context, replicas = tf.distribute.get_replica_context(), num_replicas()
        batch = tf.shape(x)[0]
        start = tf.cast(context.replica_id_in_sync_group, "int32") * batch
        draws = self.draw((batch * replicas,) + tuple(x.shape[1:]))
        draws = tf.nest.map_structure(lambda t: t[start:start + batch], draws)
        loss, grads = self._gradients(x, labels, draws)
        loss, *grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, [loss, *grads])
        finite = all_finite(loss, grads)
        # The optimizer sums the replicas' gradients after clipping them: clip the mean here
        # (its clipping then leaves the smaller `grads / replicas` alone) and hand it the shares.
        shares = [g / replicas for g in self.optimizer._clip_gradients(grads)]

        def apply_if_finite(strategy, finite, shares):
            # A cond around a branch that synchronizes replicas must run in the cross-replica context.
            keras.ops.cond(strategy.experimental_local_results(finite)[0],
                           lambda: strategy.extended.call_for_each_replica(
                               self.optimizer.apply, args=(shares, self.trainable_variables)),
                           lambda: None)

        context.merge_call(apply_if_finite, args=(finite, shares))
        return self.end_step(finite, loss)


def scope_of(model):
    """The scope of the strategy `model` was made in (a no-op outside one)."""
    return model.distribute_strategy.scope()
