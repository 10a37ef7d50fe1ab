"""keras-tract: Transitive Closure Time-Distillation (TRACT) in Keras 3."""

from keras_tract import data, networks
from keras_tract.denoisers import EDMPrecond, GaussianMixtureDenoiser, VPDenoiser
from keras_tract.distiller import BinaryDistiller, TRACTDistiller, student_from
from keras_tract.schedules import CosineSchedule, KarrasSchedule, Schedule
from keras_tract.solvers import ddim_step, heun_step, sample, sample_images
from keras_tract.teacher import EDMTrainer, LinearRampUp

__version__ = "0.1.0"

__all__ = [
    "BinaryDistiller",
    "TRACTDistiller",
    "CosineSchedule",
    "EDMPrecond",
    "EDMTrainer",
    "LinearRampUp",
    "GaussianMixtureDenoiser",
    "KarrasSchedule",
    "Schedule",
    "VPDenoiser",
    "ddim_step",
    "heun_step",
    "data",
    "networks",
    "sample",
    "sample_images",
    "student_from",
]
