"""Word-piece to token alignment."""

import numpy as np

from nlu_components.align import pool_pieces_to_tokens


def test_pieces_are_averaged_per_token_and_missing_tokens_get_the_mean() -> None:
    vectors = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    offsets = np.array([[0, 3], [3, 5], [6, 9]])  # "unbelievable" split in two, then "yes"
    spans = [(0, 5), (6, 9), (10, 12)]
    out = pool_pieces_to_tokens(vectors, offsets, spans)
    np.testing.assert_allclose(out[0], [2.0, 0.0])
    np.testing.assert_allclose(out[1], [0.0, 2.0])
    np.testing.assert_allclose(out[2], vectors.mean(axis=0))  # truncated away


def test_no_tokens() -> None:
    assert pool_pieces_to_tokens(np.zeros((2, 4), np.float32), np.zeros((2, 2)), []).shape == (0, 4)
