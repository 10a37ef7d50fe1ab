"""TRACT on CIFAR-10 with a cosine-logSNR (VP) teacher: 1024 -> 32 -> 1, FID 5.02 at 96M samples.

Teacher: the Google progressive-distillation CIFAR-10 teacher (`cifar_original`, 60.0M parameters,
x-prediction; Salimans & Ho 2022), named `pd:cifar10`: downloaded once and converted to a `.keras`
VPDenoiser(GoogleUNet) (tools/convert.py). Settings follow
ml-tract's tc_distill.py: batch 256, Adam 2e-4, clipped DDIM teacher, max(SNR, 1)
loss summed over pixels with global norm clipping at 1.0, mu_S 0.5, ema_residual 1e-3.
The teacher stage trains an EDM DDPM++ teacher instead (a VE teacher distills on this grid too).
"""

from keras_tract.config import defaults


def get_config():
    config = defaults()
    config["data"].update(name="cifar10", batch_size=256, flip=True)  # tc_distill.py default batch
    config["teacher"].update(network="ddpmpp_cifar10")
    config["distill"].update(
        teacher="pd:cifar10", schedule="cosine", num_steps=1024,
        time_schedule=[1024, 32, 1],  # the paper's best phase split for this teacher
        teacher_solver="ddim", clip_teacher=True,  # tc_distill.py clips the teacher step
        train_len=96 * 2**20, lr=2e-4, loss="snr_trunc", global_clipnorm=1.0,
        self_teacher_momentum=0.5, ema_residual=1e-3)
    config["evaluate"].update(num_samples=1000, reference_split="test",
                              fid_every=8 * 2**20, fid_samples=10_000)  # FID with --set=evaluate.fid_ref=STATS.npz
    return config
