"""What the command-line tools share: a quiet start-up, one way to report errors, a clean stop on Ctrl-C."""

import os
import sys

from absl import app, logging

# Errors a user can fix from the command line: reported in one line, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def quiet_imports(tensorflow=True):
    """Imports Keras (and so the backend) and, with `tensorflow`, TensorFlow, with the C++ start-up logs
    that TensorFlow, XLA and CUDA print on a CPU machine silenced; `KERAS_TRACT_STARTUP_LOGS=1` shows them.

    A tool that needs no TensorFlow (no `tf.data`, no image decoding) on another backend starts without
    it: 6 to 10 s sooner on a CPU under PyTorch.
    """
    if os.environ.get("KERAS_TRACT_STARTUP_LOGS") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401

        if tensorflow:
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    logging.set_verbosity(logging.WARNING)


def run(main, tensorflow=True):
    """`absl.app.run(main)` with the tools' conventions: a user error ends as `tool.py: error: ...` on
    one line (exit 1), Ctrl-C as one line (exit 130). `tensorflow`: whether the tool uses TensorFlow, a
    bool or a function of the arguments left after the flags (`quiet_imports`)."""
    name = os.path.basename(sys.argv[0])

    def quiet_main(argv):
        quiet_imports(tensorflow(argv) if callable(tensorflow) else tensorflow)
        try:
            return main(argv)
        except app.UsageError as error:  # absl would print the whole usage text
            raise ValueError(str(error)) from None

    try:
        app.run(quiet_main)
    except USER_ERRORS as error:
        sys.exit(f"{name}: error: {' '.join(str(error).split())}")
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
