"""Two-stage search: the bfloat16 pass only chooses candidates; their scores are float32."""

from __future__ import annotations

import numpy as np
import torch

from nlu_components.nearest import candidates


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
