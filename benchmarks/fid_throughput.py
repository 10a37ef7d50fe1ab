"""Images per second of the FID Inception (pool3 at 299 px, random weights) on the current backend.

Usage (one backend per process):
    for b in jax tensorflow torch; do KERAS_BACKEND=$b python benchmarks/fid_throughput.py; done
"""

import time

from absl import app, flags

flags.DEFINE_integer("batch", 32, "Images per call.")
flags.DEFINE_integer("calls", 4, "Timed calls after one warm-up call.")
flags.DEFINE_integer("size", 32, "Input side (images are resized to 299 inside the model).")
FLAGS = flags.FLAGS


def main(_):
    import keras
    import numpy as np

    from keras_tract.fid.inception import fid_inception

    model = fid_inception(input_shape=(FLAGS.size, FLAGS.size, 3))
    pool3 = keras.Model(model.inputs, model.outputs[0])
    images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch, FLAGS.size, FLAGS.size, 3)).astype("float32")
    start = time.perf_counter()
    keras.ops.convert_to_numpy(pool3.predict_on_batch(images))
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FLAGS.calls):
        keras.ops.convert_to_numpy(pool3.predict_on_batch(images))
    seconds = time.perf_counter() - start
    print(f"{keras.config.backend():<10} batch {FLAGS.batch}, {FLAGS.size}px -> 299px: "
          f"{FLAGS.batch * FLAGS.calls / seconds:.1f} images/s (first call, with compilation: {warmup:.1f} s)")


if __name__ == "__main__":
    app.run(main)
