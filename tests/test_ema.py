import keras
import numpy as np
from helpers.common import mlp_student, to_numpy

from keras_tract.ema import clone, ema_update


def test_bias_corrected_ema_equals_normalized_geometric_average():
    source = mlp_student(hidden=4, depth=1, seed=0)
    average = clone(source, "average")
    counter = keras.Variable(0, dtype="int32", trainable=False)
    momentum, iterates = 0.7, []
    rng = np.random.default_rng(1)
    for step in range(5):
        source.set_weights([rng.standard_normal(w.shape).astype("float32") for w in source.get_weights()])
        iterates.append(source.get_weights())
        ema_update(average, source, momentum, counter, keras.ops.convert_to_tensor(step != 2))
    kept = [it for i, it in enumerate(iterates) if i != 2]  # step 2 was skipped
    coef = momentum ** np.arange(len(kept))[::-1]
    for i, got in enumerate(average.get_weights()):
        want = sum(c * it[i].astype(np.float64) for c, it in zip(coef, kept)) / coef.sum()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(to_numpy(counter.value)) == 4


def test_first_update_is_a_copy_and_clone_is_frozen():
    source = mlp_student(hidden=4, depth=1, seed=0)
    average = clone(source, "average")
    assert not average.trainable_weights and len(average.weights) == len(source.weights)
    average.set_weights([np.zeros_like(w) for w in average.get_weights()])
    ema_update(average, source, 0.999, keras.Variable(0, dtype="int32", trainable=False),
               keras.ops.convert_to_tensor(True))
    for a, s in zip(average.get_weights(), source.get_weights()):
        np.testing.assert_allclose(a, s, rtol=1e-5, atol=1e-7)
