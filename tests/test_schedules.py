import numpy as np
import pytest

from keras_tract import CosineSchedule, KarrasSchedule


def test_karras_grid_equals_formula_and_spot_values():
    schedule = KarrasSchedule(40)
    sigmas = schedule.sigmas
    assert sigmas.dtype == np.float64 and sigmas.shape == (41,)
    k = np.arange(1, 41)
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    expected = (lo + (k - 1) / 39 * (hi - lo)) ** 7
    np.testing.assert_allclose(sigmas[1:], expected, rtol=1e-14)
    assert sigmas[0] == 0.0 and np.all(np.diff(sigmas) > 0)
    np.testing.assert_allclose(sigmas[1:4], [0.002, 0.003677, 0.006437], atol=5e-7)
    np.testing.assert_allclose(sigmas[38:], [60.117, 69.451, 80.0], atol=5e-4)


def test_cosine_grid_equals_formula_and_spot_values():
    schedule = CosineSchedule(1024)
    t = np.arange(1025) / 1024
    b = np.arctan(np.exp(-10.0))
    a = np.arctan(np.exp(10.0)) - b
    logsnr = -2.0 * np.log(np.tan(a * t + b))
    np.testing.assert_allclose(schedule.logsnr, logsnr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(schedule.sigmas, np.exp(-logsnr / 2), rtol=1e-12)
    np.testing.assert_allclose(schedule.logsnr[[0, 1, 32, 512, 1024]],
                               [20.0, 12.90, 6.02, 0.0, -20.0], atol=5e-3)
    assert np.all(np.diff(schedule.sigmas) > 0)


def test_coarse_grid():
    schedule = KarrasSchedule(40)
    np.testing.assert_array_equal(schedule.coarse_indices(8), np.arange(0, 41, 5))
    np.testing.assert_array_equal(schedule.coarse_sigmas(1), schedule.sigmas[[0, 40]])
    with pytest.raises(ValueError, match="steps=3"):
        schedule.coarse_indices(3)


def test_config_round_trip():
    for schedule in (KarrasSchedule(18, 0.01, 50.0, 5.0), CosineSchedule(64, -10.0, 15.0)):
        again = type(schedule).from_config(schedule.get_config())
        np.testing.assert_array_equal(again.sigmas, schedule.sigmas)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma_min": 0.0}, "sigma_min=0.0"),
        ({"sigma_min": -1.0}, "sigma_min=-1.0"),
        ({"sigma_max": 0.001}, "sigma_max=0.001"),
        ({"num_steps": 0}, "num_steps=0"),
        ({"num_steps": 2.5}, "num_steps=2.5"),
        ({"rho": 0}, "rho=0"),
    ],
)
def test_karras_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KarrasSchedule(**kwargs)


def test_cosine_bad_input():
    with pytest.raises(ValueError, match="logsnr_max=-30"):
        CosineSchedule(logsnr_max=-30)
