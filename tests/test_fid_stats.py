import numpy as np
import pytest
import scipy.linalg

from keras_tract.fid.stats import FeatureStats, frechet_distance, load_stats, save_stats


def spd(dim, rng, rank=None):
    a = rng.standard_normal((dim, rank or dim))
    return a @ a.T / (rank or dim) + (0 if rank else 0.1) * np.eye(dim)


def test_closed_forms():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(6), spd(6, rng)
    assert abs(frechet_distance(mu, s, mu, s)[0]) < 1e-10
    # pytorch-fid's case: equal identity covariances, means 0 and 1 in 2048 dimensions.
    eye = np.eye(2048)
    assert frechet_distance(np.zeros(2048), eye, np.ones(2048), eye)[0] == pytest.approx(2048, rel=1e-12)
    a, b = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    d = rng.standard_normal(5)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + d @ d
    assert frechet_distance(d, np.diag(a), np.zeros(5), np.diag(b))[0] == pytest.approx(expected, rel=1e-10)
    c = 1.7
    assert frechet_distance(mu, s, mu, c * c * s)[0] == pytest.approx((1 - c) ** 2 * np.trace(s), rel=1e-10)
    # 2x2 non-commuting: tr sqrt(S1 S2) = sqrt(tr M + 2 sqrt(det M)), M = S1 S2.
    s1, s2 = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 0.5]])
    m = s1 @ s2
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [64, 256])
def test_agrees_with_scipy_sqrtm_and_is_symmetric(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2, s1, s2 = rng.standard_normal(dim), rng.standard_normal(dim), spd(dim, rng), spd(dim, rng)
    value = frechet_distance(mu1, s1, mu2, s2)[0]
    legacy = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert value == pytest.approx(legacy, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1)[0] == pytest.approx(value, rel=1e-10)
    assert frechet_distance(mu1, s1, mu2, s2, method="scipy")[0] == pytest.approx(value, rel=1e-8)


def test_rank_deficient_covariance_stays_finite():
    rng = np.random.default_rng(1)
    s1, s2 = spd(50, rng, rank=10), spd(50, rng, rank=10)
    value, info = frechet_distance(np.zeros(50), s1, np.zeros(50), s2)
    assert np.isfinite(value) and value > 0 and info["min_eigenvalue"] > -1e-8


def test_streaming_statistics_equal_numpy_and_merge_exactly():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((1000, 16)) * 3 + 5).astype(np.float32)  # float32 features, float64 sums
    whole = FeatureStats(16)
    for chunk in np.array_split(x, 7):
        whole.update(chunk)
    x = x.astype(np.float64)
    mu, sigma = whole.mu_sigma()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    shards = [FeatureStats(16).update(part) for part in np.array_split(x[::-1], 3)]
    merged = shards[0].merge(shards[1]).merge(shards[2])
    np.testing.assert_allclose(merged.mu_sigma()[1], sigma, rtol=1e-10, atol=1e-12)
    restored = FeatureStats.from_moments(mu, sigma, 1000)
    np.testing.assert_allclose(restored.merge(FeatureStats(16)).mu_sigma()[1], sigma, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="16 values per row"):
        whole.update(np.zeros((2, 8)))


def test_stats_files_round_trip_and_foreign_files_load(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = rng.standard_normal(4), spd(4, rng)
    save_stats(str(tmp_path / "ours.npz"), mu, sigma, n=10, mode="tf1")
    got_mu, got_sigma, n, meta = load_stats(str(tmp_path / "ours.npz"))
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert n == 10 and meta == {"mode": "tf1"}
    np.savez(tmp_path / "pytorch_fid.npz", mu=mu.astype(np.float32), sigma=sigma)  # mu and sigma only
    assert load_stats(str(tmp_path / "pytorch_fid.npz"))[2:] == (None, {})
    np.savez(tmp_path / "images.npz", arr_0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lacks \\['mu', 'sigma'\\]"):
        load_stats(str(tmp_path / "images.npz"))


def test_invalid_statistics_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    mu, sigma = rng.standard_normal(4), spd(4, rng)
    cases = {"nan_mu": (np.where(np.arange(4) == 2, np.nan, mu), sigma, "must be finite"),
             "negative": (mu, -sigma, "not a covariance .positive semi-definite.: its smallest eigenvalue is -"),
             "asymmetric": (mu, sigma + np.triu(np.ones((4, 4)), 1), "sigma is not symmetric")}
    for name, (m, s, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", mu=m, sigma=s)
        with pytest.raises(ValueError, match=message):
            load_stats(str(tmp_path / f"{name}.npz"))
    save_stats(str(tmp_path / "good.npz"), mu, sigma, n=10)
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a readable .npz statistics file .truncated or corrupt"):
        load_stats(str(tmp_path / "truncated.npz"))
    # A rank-deficient covariance (fewer images than features) is a valid one.
    features = rng.standard_normal((3, 6))
    np.savez(tmp_path / "few.npz", mu=features.mean(0), sigma=np.cov(features, rowvar=False))
    assert load_stats(str(tmp_path / "few.npz"))[1].shape == (6, 6)
