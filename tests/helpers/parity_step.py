"""One TRACT optimizer step with fixed weights, batch, noise and levels; writes the results to an .npz.

Run as `KERAS_BACKEND=... python tests/helpers/parity_step.py OUT.npz` (used by test_distiller.py).
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.common import circle_mixture, mlp_student  # noqa: E402
from keras_tract import GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller  # noqa: E402

BATCH = 8


class FixedDraws(TRACTDistiller):
    def draw(self, shape):
        rng = np.random.default_rng(7)
        noise = rng.standard_normal((BATCH, 2)).astype("float32")
        offset = np.array([0, 1, 5, 10, 20, 30, 38, 39], "int32")
        return (keras.ops.convert_to_tensor(noise), keras.ops.ones((BATCH,), "int32"),
                keras.ops.convert_to_tensor(offset))


def main(path):
    distiller = FixedDraws(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=5),
                           KarrasSchedule(40), (40, 1), steps_per_phase=100)
    # SGD: an update linear in the gradient (the first Adam step is about lr * sign(g), which
    # turns float32 rounding of near-zero gradients into full-size differences).
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    x = np.random.default_rng(8).uniform(-0.9, 0.9, (BATCH, 2)).astype("float32")
    history = distiller.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    out = {"loss": np.array(history.history["loss"][-1])}
    for name in ("student", "self_teacher", "inference_student"):
        for i, w in enumerate(getattr(distiller, name).get_weights()):
            out[f"{name}_{i}"] = w
    np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
