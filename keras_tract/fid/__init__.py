"""FID: the 2015 FID Inception network in Keras, its preprocessing, and float64 statistics."""

from keras_tract.fid.stats import FeatureStats, frechet_distance, frechet_distance_of, load_stats, save_stats

__all__ = ["FeatureStats", "frechet_distance", "frechet_distance_of", "load_stats", "save_stats"]
