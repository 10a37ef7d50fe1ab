"""Checkpoints a TRACT run on one backend and resumes it on another (used by test_distiller.py).

    KERAS_BACKEND=torch python tests/helpers/resume_backend.py start DIR   # 2 steps, checkpoint, 2 more
    KERAS_BACKEND=jax python tests/helpers/resume_backend.py resume DIR    # the checkpoint's last 2 steps

Each writes DIR/<mode>_<backend>.npz: the student's weights, the step count, the optimizer's class
and whether the resumed train step is compiled.
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.common import circle_mixture, mixture_data, mlp_student  # noqa: E402
from keras_tract import GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller  # noqa: E402


def fit(model, steps):
    x = mixture_data(8 * steps, seed=1)
    model.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0)


def main(mode, folder):
    backend = keras.config.backend()
    checkpoint = os.path.join(folder, "checkpoint.keras")
    if mode == "start":
        model = TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=5), KarrasSchedule(40),
                               (40, 8, 1), steps_per_phase=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        fit(model, 2)
        model.save(checkpoint)
    else:
        model = keras.saving.load_model(checkpoint)
    fit(model, 2)
    np.savez(os.path.join(folder, f"{mode}_{backend}.npz"), *model.student.get_weights(),
             steps=int(keras.ops.convert_to_numpy(model.step_count)),
             phase=int(keras.ops.convert_to_numpy(model.phase)),
             optimizer=type(model.optimizer).__module__, compiled=bool(model.jit_compile))


if __name__ == "__main__":
    main(*sys.argv[1:])
