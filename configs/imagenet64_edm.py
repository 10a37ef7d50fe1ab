"""TRACT-EDM on class-conditional ImageNet 64x64: 40 -> 1 from EDM's ADM teacher, 1-step FID 7.52 at 96M.

Teacher: EDM's `edm-imagenet-64x64-cond-adm.pkl` (ADM, 295.9M parameters, 1000 classes), named
`edm:imagenet64-cond-adm`: downloaded once and converted to a `.keras` EDMPrecond (tools/convert.py).
Data: TFDS `imagenet_resized/64x64` prepared locally (manual download).
The paper's ImageNet runs used batch 256 and mu_I = 0.99995 (TRACT, appendix);
the rest is the TRACT-EDM default.
"""

from keras_tract.config import defaults


def get_config():
    config = defaults()
    config["data"].update(name="imagenet64", batch_size=256, labels=True, flip=False)
    config["teacher"].update(  # EDM's imagenet64 cond adm (Karras et al. 2022, Table 7)
        network="adm_imagenet64", train_len=2_500_000_000, lr=1e-4, ema_halflife_kimg=50_000.0)
    config["distill"].update(
        teacher="edm:imagenet64-cond-adm", time_schedule=[40, 1], train_len=96 * 2**20, lr=1e-3,
        inference_momentum=0.99995)
    config["evaluate"].update(num_samples=1000, reference_split="validation",
                              fid_every=8 * 2**20, fid_samples=10_000)  # FID with --set=evaluate.fid_ref=STATS.npz
    return config
