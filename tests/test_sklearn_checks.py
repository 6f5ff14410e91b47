"""scikit-learn's own estimator checks on SymmetryRegressor (``check_estimator``).

Each check is one test. The checks that cannot apply are in
``softequiv.estimator.SKLEARN_EXPECTED_FAILED_CHECKS`` with the reason, and run as
expected failures. The default suite checks the estimator with a small MLP (every
input, fitting, prediction and scoring path of the wrapper is the same for every
method); the slow suite repeats all checks with the default soft-equivariant network.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from softequiv.estimator import SKLEARN_EXPECTED_FAILED_CHECKS, SymmetryRegressor  # noqa: E402


def expected_failures(estimator: SymmetryRegressor) -> dict[str, str]:
    return SKLEARN_EXPECTED_FAILED_CHECKS


@parametrize_with_checks([SymmetryRegressor(method="mlp", epochs=40, lr=1e-2, ch=16,
                                            layers=1)],
                         expected_failed_checks=expected_failures)
def test_scikit_learn_check(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([SymmetryRegressor(epochs=20, lr=3e-2, ch=8, layers=1)],
                         expected_failed_checks=expected_failures)
def test_scikit_learn_check_soft_equivariant(estimator, check):
    check(estimator)


def test_expected_failures_are_documented():
    doc = SymmetryRegressor.__doc__
    for name, reason in SKLEARN_EXPECTED_FAILED_CHECKS.items():
        assert name in doc and len(reason) > 40
