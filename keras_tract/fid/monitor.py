"""FID of the student during distillation, as ml-tract's `--report_fid_len` reports it.

Every `evaluate.fid_every` training samples the distill stage draws `evaluate.fid_samples`
images with the inference student at each of `evaluate.steps` and reports their FID against
`evaluate.fid_ref` (EDM's `fid-refs/*.npz`, or `tools/fid.py stats`). The noise is the same at
every report, so the curve shows the student, not the draw.
"""

import numpy as np

from keras_tract.fid.features import features, load_network
from keras_tract.fid.stats import frechet_distance, load_stats
from keras_tract.images import to_uint8


class FIDMonitor:
    """Student FIDs against fixed reference statistics.

    Args:
        ref: path of reference statistics (`mu`, `sigma`).
        num: images per FID. steps: list of student step counts.
        shape: the image shape `(H, W, C)`. num_classes: None, or the classes to draw labels from.
        batch: images per sampler and Inception call. seed: the noise seed.
        weights: FID Inception weights (default `$FID_INCEPTION_WEIGHTS`). resolution: Inception input
            side (299; anything else is for tests).

    Call arguments:
        distiller: anything with `generate(noise, steps=, labels=)` returning images in [-1, 1].

    Returns:
        `{"fid_1step": ..., "fid_2step": ...}` for the steps asked.
    """

    def __init__(self, ref, num, steps, shape, num_classes=None, batch=250, seed=0, weights=None, resolution=299):
        self.network, self.provenance = load_network(weights, "tf1", resolution, tuple(shape[:2]))
        self.mu, self.sigma, _, _ = load_stats(ref)
        if self.mu.shape != (self.network.outputs[0].shape[-1],):
            raise ValueError(f"evaluate.fid_ref={ref} holds statistics of {self.mu.shape} features, not pool3's.")
        self.num, self.steps, self.batch = int(num), list(steps), int(batch)
        rng = np.random.default_rng(seed)
        self.noise = rng.standard_normal((self.num,) + tuple(shape)).astype("float32")
        self.labels = None if not num_classes else np.eye(num_classes, dtype="float32")[
            rng.integers(0, num_classes, self.num)]

    def images(self, distiller, steps):
        """The uint8 images of the student at `steps`, in batches."""
        import keras

        for start in range(0, self.num, self.batch):
            labels = None if self.labels is None else self.labels[start:start + self.batch]
            x = distiller.generate(self.noise[start:start + self.batch], steps=steps, labels=labels)
            yield to_uint8(keras.ops.convert_to_numpy(x))

    def __call__(self, distiller):
        result = {}
        for steps in self.steps:
            stats = features(self.network, self.images(distiller, steps), self.batch, progress=False)
            result[f"fid_{steps}step"] = float(frechet_distance(*stats.mu_sigma(), self.mu, self.sigma)[0])
        return result
