"""The dense index: exact grouped scores, and every search kernel (the two-stage bfloat16 one
included) keeps the top exact."""

from __future__ import annotations

import numpy as np
import pytest

from actions.kb import dense
from actions.kb.dense import DenseIndex
from nlu_components.nearest import KERNELS, RowSearch


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def _exact(
    groups: list[np.ndarray], answers: np.ndarray, weight: float, q: np.ndarray
) -> np.ndarray:
    return np.array([(g @ q).max() + weight * float(a @ q) for g, a in zip(groups, answers)])


def test_grouped_scores_equal_the_formula() -> None:
    rng = np.random.default_rng(0)
    groups = [_unit(rng.normal(size=(int(rng.integers(1, 4)), 8))) for _ in range(20)]
    answers = _unit(rng.normal(size=(20, 8)))
    index = DenseIndex(groups, answers, answer_weight=0.3)
    query = _unit(rng.normal(size=8))
    np.testing.assert_allclose(index.scores(query), _exact(groups, answers, 0.3, query), atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_keeps_the_best_articles_exact(
    kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever kernel the index's timing picks, the best articles' scores are exact (the
    bfloat16 pass rescores its short list in float32)."""
    monkeypatch.setattr(
        dense, "RowSearch", lambda rows, rescore, bf16: RowSearch(rows, rescore, kernel=kernel)
    )
    rng = np.random.default_rng(1)
    n = 3000
    groups = [_unit(rng.normal(size=(2, 32))) for _ in range(n)]  # 6,000 rows ≥ BF16_MIN_ROWS
    answers = _unit(rng.normal(size=(n, 32)))
    index = DenseIndex(groups, answers, answer_weight=0.2)
    assert index._search.kernel == kernel
    for seed in range(5):
        query = _unit(np.random.default_rng(seed).normal(size=32))
        exact = _exact(groups, answers, 0.2, query)
        scores = index.scores(query)
        top = np.argsort(-exact)[:20]
        assert list(np.argsort(-scores)[:20]) == list(top)
        np.testing.assert_allclose(scores[top], exact[top], atol=1e-5)
        # everything else is within bfloat16 precision
        np.testing.assert_allclose(scores, exact, atol=0.02)


def test_small_index_stays_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense, "_has_fast_bf16", lambda: True)
    index = DenseIndex([_unit(np.ones((1, 4)))], _unit(np.ones((1, 4))))
    assert index._search.kernel == "rows"
    offered: list[bool] = []
    monkeypatch.setattr(
        dense, "RowSearch", lambda rows, rescore, bf16: offered.append(bf16) or RowSearch(rows)
    )
    DenseIndex([_unit(np.ones((1, 4)))] * 10, _unit(np.ones((10, 4))))
    assert offered == [False]  # below BF16_MIN_ROWS the bfloat16 pass is not even offered
