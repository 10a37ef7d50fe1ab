"""TRACT-EDM on CIFAR-10 as published: 40 -> 1 from EDM's NCSN++ teacher, 1-step FID 3.78 at 256M samples.

Teacher: EDM's `edm-cifar10-32x32-uncond-ve.pkl` (NCSN++, 56.4M parameters), named
`edm:cifar10-uncond-ve`: downloaded once and converted to a `.keras` EDMPrecond (tools/convert.py;
offline, convert a downloaded file and pass --teacher); or trained here with --stage=teacher
(EDM's recipe without its augmentation pipeline).
Every distillation number below is the default or README value of ml-tract's tc_distill_edm.py.
"""

from keras_tract.config import defaults


def get_config():
    config = defaults()
    config["data"].update(name="cifar10", batch_size=512, flip=True)  # README: --batch 512; x-flips
    config["teacher"].update(
        network="ncsnpp_cifar10",  # EDM's cifar10 uncond ve (Karras et al. 2022, Table 7)
        train_len=200_000_000, lr=1e-3, lr_rampup=10_000_000, ema_halflife_kimg=500.0)  # EDM: 200 Mimg
    config["distill"].update(
        teacher="edm:cifar10-uncond-ve",
        time_schedule=[40, 1],  # README
        train_len=96 * 2**20,  # 96M (FID 4.5 range); 256 * 2**20 gives the published 3.78 (TRACT, Table 2)
        lr=1e-3, self_teacher_momentum=0.5, ema_residual=1e-3, loss="edm")
    config["evaluate"].update(num_samples=1000, reference_split="test",
                              fid_every=8 * 2**20, fid_samples=10_000)  # FID with --set=evaluate.fid_ref=STATS.npz
    return config
