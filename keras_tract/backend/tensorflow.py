"""TensorFlow adapters."""

import keras
import tensorflow as tf


def compile_function(model, fn, jit_compile=True):
    """Returns `fn` as a `tf.function` (XLA when `jit_compile`); variables are read at call time."""
    del model  # tf.function captures variables by reference
    return tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)


def all_finite(loss, grads):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in [loss, *grads]])


class TrainStep:
    """`train_step` for TensorFlow: GradientTape; the optimizer runs only on finite gradients."""

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        prepared = self.prepare_step(x, labels)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.step_loss(prepared, labels)
        grads = tape.gradient(loss, variables)
        finite = all_finite(loss, grads)
        keras.ops.cond(finite, lambda: self.optimizer.apply(grads, variables), lambda: None)
        return self.end_step(finite, loss)
