"""Similarity search: the two-stage bfloat16 pass only chooses candidates (their scores are
float32), and `RowSearch`'s kernels agree with the float32 product."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlu_components.nearest import KERNELS, RowSearch, candidates


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_candidates_are_the_float32_best_rows_for_one_query_and_a_batch() -> None:
    rng = np.random.default_rng(3)
    rows = _unit(rng.normal(size=(5000, 64)))
    queries = _unit(rng.normal(size=(6, 64)))
    exact = torch.from_numpy(rows)
    approximate = exact.to(torch.bfloat16)
    truth = rows @ queries.T
    with torch.inference_mode():
        batch = candidates(exact, approximate, torch.from_numpy(queries), 16)
        singles = [candidates(exact, approximate, torch.from_numpy(q[None]), 16) for q in queries]
    for column in range(len(queries)):
        for best, rescored, scores in (
            (batch[0][:, column], batch[1][:, column], batch[2][:, column]),
            (singles[column][0][:, 0], singles[column][1][:, 0], singles[column][2][:, 0]),
        ):
            assert scores.dtype == torch.bfloat16 and len(scores) == len(rows)
            np.testing.assert_allclose(rescored.numpy(), truth[best.numpy(), column], atol=1e-5)
            # the true nearest row is among the candidates, with its float32 value
            assert int(np.argmax(truth[:, column])) in set(best.tolist())
            assert abs(float(rescored.max()) - float(truth[:, column].max())) < 1e-5


def test_k_larger_than_the_rows_takes_every_row() -> None:
    rows = torch.from_numpy(_unit(np.eye(3, 8)))
    with torch.inference_mode():
        best, rescored, _ = candidates(rows, rows.to(torch.bfloat16), rows[:1], 10)
    assert sorted(best[:, 0].tolist()) == [0, 1, 2]
    assert float(rescored.max()) == 1.0


@pytest.mark.parametrize("kernel", KERNELS)
def test_row_search_kernels_agree_with_the_float32_product(kernel: str) -> None:
    rng = np.random.default_rng(5)
    rows = _unit(rng.normal(size=(4000, 32)))
    queries = _unit(rng.normal(size=(3, 32)))
    truth = rows @ queries.T
    search = RowSearch(rows, rescore=12, kernel=kernel)
    with torch.inference_mode():
        for batch in (torch.from_numpy(queries), torch.from_numpy(queries[:1])):
            scores = search.scores(batch).numpy()
            expected = truth[:, : len(batch)]
            assert scores.shape == expected.shape and scores.dtype == np.float32
            # the float32 kernels everywhere; the bfloat16 one within its rounding, and exact
            # on its short list, which holds the best row
            np.testing.assert_allclose(scores, expected, atol=1e-5 if kernel != "bf16" else 1e-2)
            top = expected.argmax(axis=0)
            np.testing.assert_allclose(
                scores[top, range(len(batch))], expected.max(axis=0), atol=1e-5
            )
            np.testing.assert_allclose(search.best(batch).numpy(), expected.max(axis=0), atol=1e-5)


def test_row_search_times_its_kernels_on_large_matrices_only() -> None:
    rng = np.random.default_rng(6)
    small = RowSearch(_unit(rng.normal(size=(100, 16))), bf16=True)
    assert small.kernel == "rows"  # below the timing size: no timing
    large = RowSearch(_unit(rng.normal(size=(3000, 64))), bf16=False)
    assert large.kernel in ("rows", "columns")  # bfloat16 not offered
    # only the chosen kernel's copy of the rows is kept
    assert (large._columns is not None) == (large.kernel == "columns")
    assert large._approximate is None
    assert RowSearch(_unit(rng.normal(size=(3000, 64))), bf16=True).kernel in KERNELS
    empty = RowSearch(np.zeros((0, 8), np.float32))
    with torch.inference_mode():
        assert empty.scores(torch.ones(1, 8)).shape == (0, 1)
    with pytest.raises(ValueError, match="kernel must be one of"):
        RowSearch(np.zeros((2, 2), np.float32), kernel="gpu")
