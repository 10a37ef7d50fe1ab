"""Feature statistics in float64 on the host and the Frechet distance between two Gaussians.

The `.npz` format holds `mu` `(D,)` and `sigma` `(D, D)` (float64), as pytorch-fid,
TTUR, EDM and the OpenAI evaluator write them, plus optional `n` and string
metadata; files from those tools load unchanged.
"""

import io
import warnings

import numpy as np

from keras_tract.images import write_atomic


class FeatureStats:
    """Streaming mean and unbiased covariance of feature vectors, accumulated in float64.

    Holds `n`, `sum(x)` and `sum(x x^T)`; `merge` of shards is exact.

    Args:
        dim: feature dimension D.

    Example:
    >>> stats = FeatureStats(3)
    >>> for features in np.split(np.arange(12.0).reshape(4, 3), 2):  # batches of (B, D) features
    ...     _ = stats.update(features)
    >>> mu, sigma = stats.mu_sigma()
    >>> mu, sigma.shape
    (array([4.5, 5.5, 6.5]), (3, 3))
    """

    def __init__(self, dim):
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"`dim` must be a positive integer, got dim={dim!r}.")
        self.dim, self.n = int(dim), 0
        self.total = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def update(self, features):
        """Adds features `(B, D)` (any float dtype; flattened beyond the batch axis)."""
        x = np.asarray(features, np.float64).reshape(len(features), -1)
        if x.shape[1] != self.dim:
            raise ValueError(f"`features` must have {self.dim} values per row, got shape {np.shape(features)}.")
        self.n += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x
        return self

    def merge(self, other):
        """Adds the statistics of another `FeatureStats` of the same dimension (exact)."""
        if other.dim != self.dim:
            raise ValueError(f"Cannot merge statistics of dimension {other.dim} into dimension {self.dim}.")
        self.n += other.n
        self.total += other.total
        self.outer += other.outer
        return self

    @classmethod
    def from_moments(cls, mu, sigma, n):
        """The sums that give `mu`, `sigma` (divisor n - 1) over `n` samples."""
        mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
        stats = cls(len(mu))
        stats.n, stats.total = int(n), n * mu
        stats.outer = (n - 1) * sigma + n * np.outer(mu, mu)
        return stats

    def mu_sigma(self):
        """`(mu (D,), sigma (D, D))` with the unbiased (n - 1) covariance, as `np.cov`."""
        if self.n < 2:
            raise ValueError(f"Statistics need at least 2 samples, got n={self.n}.")
        mu = self.total / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, (sigma + sigma.T) / 2


def save_stats(path, mu, sigma, n=None, **metadata):
    """Writes `mu`, `sigma`, optional `n` and string metadata to an `.npz`, atomically."""
    arrays = {"mu": np.asarray(mu, np.float64), "sigma": np.asarray(sigma, np.float64)}
    if n is not None:
        arrays["n"] = np.int64(n)
    arrays.update({key: np.str_(value) for key, value in metadata.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_stats(path):
    """`(mu, sigma, n or None, metadata dict)` from an `.npz` of pytorch-fid/EDM/TTUR layout or ours.

    Refuses, in one line, a file that is not a readable `.npz`, and statistics that no set of
    images has: non-finite values, or a covariance that is not symmetric positive semi-definite."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise KeyError(f"it lacks {sorted(missing)} (has {data.files})")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            n = int(data["n"]) if "n" in data.files else None
            metadata = {k: str(data[k]) for k in data.files
                        if k not in ("mu", "sigma", "n") and data[k].dtype.kind == "U" and data[k].ndim == 0}
    except KeyError as error:
        raise ValueError(f"{path!r} is not a statistics file: {error.args[0]}.") from None
    except Exception as error:
        raise ValueError(f"{path!r} is not a readable .npz statistics file (truncated or corrupt: "
                         f"{' '.join(str(error).split()) or type(error).__name__}).") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"{path!r}: mu {mu.shape} and sigma {sigma.shape} do not form (D,) and (D, D).")
    check_stats(mu, sigma, path)
    return mu, sigma, n, metadata


def check_stats(mu, sigma, name="statistics"):
    """Raises ValueError unless `mu`, `sigma` are finite and `sigma` is symmetric positive semi-definite
    (up to float rounding: eigenvalues down to -1e-6 of the largest one)."""
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: mu and sigma must be finite; they hold NaN or infinity.")
    scale = max(float(np.abs(sigma).max()), 1e-300)
    asymmetry = float(np.abs(sigma - sigma.T).max())
    if asymmetry > 1e-6 * scale:
        raise ValueError(f"{name}: sigma is not symmetric (max |sigma - sigma^T| = {asymmetry:.3g}).")
    lowest, highest = (float(e) for e in np.linalg.eigvalsh(sigma)[[0, -1]])
    if lowest < -1e-6 * max(abs(highest), scale):
        raise ValueError(f"{name}: sigma is not a covariance (positive semi-definite): its smallest eigenvalue is "
                         f"{lowest:.3g}.")


def frechet_distance(mu1, sigma1, mu2, sigma2, method="eigh"):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64, with no added epsilon.

    `method="eigh"`: `tr sqrt(S1 S2) = sum sqrt(eig(R S2 R))` with `R = sqrt(S1)`,
    both symmetric eigendecompositions (S1 S2 is similar to the PSD R S2 R), so a
    rank-deficient covariance stays finite. `method="scipy"`: `scipy.linalg.sqrtm(S1 S2)`,
    the legacy computation, kept for comparison.

    Returns:
        `(distance, diagnostics)`; diagnostics holds `min_eigenvalue` (of R S2 R,
        relative to its largest) and `method`.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"Statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}.")
    if method == "eigh":
        w, v = np.linalg.eigh(sigma1)
        root = (v * np.sqrt(np.maximum(w, 0))) @ v.T
        inner = root @ sigma2 @ root
        eig = np.linalg.eigvalsh((inner + inner.T) / 2)
        trace_root = float(np.sqrt(np.maximum(eig, 0)).sum())
        min_eig = float(eig.min() / max(abs(eig.max()), 1e-300))
    elif method == "scipy":
        import scipy.linalg

        product = scipy.linalg.sqrtm(sigma1 @ sigma2)
        trace_root, min_eig = float(np.trace(product).real), float("nan")
    else:
        raise ValueError(f'`method` must be "eigh" or "scipy", got method={method!r}.')
    if min_eig < -1e-6:
        warnings.warn(f"Covariance product has a negative eigenvalue ({min_eig:.3g} of the largest); "
                      "the statistics may come from too few samples.", stacklevel=2)
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)
    return distance, {"method": method, "min_eigenvalue": min_eig}


def frechet_distance_of(a, b):
    """Frechet distance between Gaussians fitted to two sample sets `(N, ...)` (rows flattened)."""
    stats = [FeatureStats(int(np.prod(np.shape(x)[1:]))).update(x).mu_sigma() for x in (a, b)]
    return frechet_distance(*stats[0], *stats[1])[0]
