"""The offline quick start: TRACT (40 -> 1) on scikit-learn's 8x8 digits with the bundled teacher.

The teacher (`keras_tract/assets/digits_teacher.keras`, a `ddpmpp_small` U-Net under EDM
preconditioning) is made by this config's teacher stage:
    KERAS_BACKEND=jax python tools/train.py --stage=teacher --workdir=runs/digits_teacher
Distillation keeps TRACT-EDM's settings (40 Karras levels, Heun teacher, mu_S 0.5,
ema_residual 1e-3, EDM loss, Adam 1e-3; keras_tract.config.defaults) and scales the
batch and length down to a laptop CPU.
"""

from keras_tract.config import defaults


def get_config():
    config = defaults()
    config["data"].update(name="digits", batch_size=64)  # 1437 training images of 8x8x1; no flips
    config["teacher"].update(train_len=3000 * 64, lr=2e-3, lr_rampup=300 * 64, ema_halflife_kimg=5.0)
    config["distill"].update(teacher="bundled:digits", time_schedule=[40, 1], train_len=1500 * 64)
    config["run"].update(checkpoint_every=250, sample_every=500, log_every=50)
    config["evaluate"].update(num_samples=500, batch_size=500)  # FD against the 360 test digits
    return config
