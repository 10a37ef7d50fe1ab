"""Checkpoints a TRACT run on one backend and resumes it on others (used by test_distiller.py).

    KERAS_BACKEND=torch python tests/helpers/resume_backend.py DIR           # starts: 2 steps, checkpoint, 2 more
    KERAS_BACKEND=jax python tests/helpers/resume_backend.py DIR torch       # resumes torch's checkpoint: the same
    KERAS_BACKEND=tensorflow python tests/helpers/resume_backend.py DIR jax  # resumes jax's: 2 steps

A run writes DIR/<backend>.keras after its first 2 steps with the state it saved there
(DIR/<backend>_saved.npz: every variable of the distiller and its optimizer, in order), then 2 more
steps (DIR/<backend>_steps.npz: the student's weights, the step count, the phase, the optimizer's
class, whether the train step is compiled). A resumed run also writes the state it loaded
(DIR/<backend>_loaded.npz).
"""

import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers.common import circle_mixture, mixture_data, mlp_student  # noqa: E402
from keras_tract import GaussianMixtureDenoiser, KarrasSchedule, TRACTDistiller  # noqa: E402


def fit(model):
    model.fit(mixture_data(16, seed=1), batch_size=8, epochs=1, shuffle=False, verbose=0)


def state(model, path):
    np.savez(path, *[keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables],
             paths=[v.path for v in model.variables + model.optimizer.variables])


def main(folder, resume=None):
    backend = keras.config.backend()
    out = lambda name: os.path.join(folder, f"{backend}{name}")  # noqa: E731
    if resume is None:
        model = TRACTDistiller(GaussianMixtureDenoiser(*circle_mixture()), mlp_student(seed=5), KarrasSchedule(40),
                               (40, 8, 1), steps_per_phase=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        fit(model)
    else:
        model = keras.saving.load_model(os.path.join(folder, f"{resume}.keras"))
        state(model, out("_loaded.npz"))
    model.save(out(".keras"))
    state(model, out("_saved.npz"))
    fit(model)
    np.savez(out("_steps.npz"), *model.student.get_weights(), steps=int(keras.ops.convert_to_numpy(model.step_count)),
             phase=int(keras.ops.convert_to_numpy(model.phase)), optimizer=type(model.optimizer).__module__,
             compiled=bool(model.jit_compile))


if __name__ == "__main__":
    main(*sys.argv[1:])
