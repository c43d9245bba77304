"""Debiased linear CKA: known properties, a reference package and an independent HSIC formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweep.compare.cka import linear_cka


def features(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def related_pair(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Two feature sets of different widths that share part of their signal."""
    x = features(n, 30, 0)
    y = torch.cat([x[:, :10] @ features(10, 10, 1), features(n, 15, 2)], dim=1)
    return x, y


def unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (K, L as in Song et al. 2012)
    """HSIC_1 of Song et al. (2012), eq. 5, written from the paper, independently of sweep.compare."""
    n = k.shape[0]
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    ones = np.ones(n)
    trace = np.trace(kt @ lt)
    middle = (ones @ kt @ ones) * (ones @ lt @ ones) / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (ones @ kt @ lt @ ones)
    return (trace + middle - last) / (n * (n - 3))


def cka_from_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    xn, yn = x.numpy(), y.numpy()
    k, l = xn @ xn.T, yn @ yn.T  # noqa: E741
    return unbiased_hsic(k, l) / np.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l))


def test_cka_of_a_representation_with_itself_is_one() -> None:
    x = features(40, 25, 3)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_symmetric() -> None:
    x, y = related_pair()
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling() -> None:
    x, y = related_pair()
    q, _ = torch.linalg.qr(features(30, 30, 4))
    reference = linear_cka(x, y)
    assert 0.05 < reference < 0.95  # a non-trivial value, so the invariance means something
    assert linear_cka(x @ q, y) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(reference, abs=1e-10)
    assert linear_cka(x, x @ q * 5.0) == pytest.approx(1.0, abs=1e-10)


def test_cka_is_not_invariant_to_non_isotropic_scaling() -> None:
    """Linear CKA is not invariant to any invertible linear map; a check that the test above can fail."""
    x, y = related_pair()
    stretch = torch.diag(torch.logspace(-2, 2, 30, dtype=torch.float64))
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 1e-3


def test_cka_is_near_zero_for_independent_data_at_moderate_n() -> None:
    """The debiased estimator is centred on 0; the biased one sits near 0.3 here."""
    values = np.array([linear_cka(features(64, 32, 2 * s), features(64, 32, 2 * s + 1)) for s in range(20)])
    assert abs(values.mean()) < 0.02
    assert np.abs(values).max() < 0.1


def test_cka_flattens_feature_maps_per_example() -> None:
    maps = features(16, 4 * 3 * 3, 5).reshape(16, 4, 3, 3)
    other = features(16, 7, 6)
    assert linear_cka(maps, other) == pytest.approx(linear_cka(maps.reshape(16, -1), other), abs=1e-12)


def test_cka_needs_four_examples_and_matching_rows() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(features(3, 5, 0), features(3, 5, 1))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(features(8, 5, 0), features(9, 5, 1))


def test_cka_matches_an_independent_hsic_formula() -> None:
    x, y = related_pair()
    assert linear_cka(x, y) == pytest.approx(cka_from_hsic(x, y), abs=1e-10)
    x2, y2 = features(64, 32, 7), features(64, 32, 8)
    assert linear_cka(x2, y2) == pytest.approx(cka_from_hsic(x2, y2), abs=1e-10)


def test_cka_matches_ckatorch() -> None:
    ckatorch = pytest.importorskip("ckatorch")
    for x, y in (related_pair(), (features(64, 32, 9), features(64, 16, 10)), (features(20, 5, 11),) * 2):
        reference = ckatorch.cka_base(x, y, kernel="linear", unbiased=True).item()
        assert linear_cka(x, y) == pytest.approx(reference, abs=1e-10)
