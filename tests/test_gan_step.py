"""The gan step's data wiring: utterance embeddings grouped per image, in dataset order."""
from types import SimpleNamespace

import numpy as np
import pytest

from s2i_lib.gan.step import group_by_image


def _records(*keys):
    return [SimpleNamespace(key=k) for k in keys]


def test_group_by_image_keeps_each_image_its_own_captions():
    emb = np.arange(6, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)   # row i is all i
    keys = ["b", "a", "b", "c", "a", "b"]                                         # speech-store order
    out = group_by_image(emb, keys, _records("a", "b", "c"))
    assert out.shape == (3, 3, 4)
    assert out[0, :, 0].tolist() == [1, 4, 1]      # a: its two utterances, the first repeated
    assert out[1, :, 0].tolist() == [0, 2, 5]      # b: in store order
    assert out[2, :, 0].tolist() == [3, 3, 3]      # c: one utterance only


def test_group_by_image_ignores_utterances_of_other_images():
    emb = np.eye(3, dtype=np.float32)
    out = group_by_image(emb, ["x", "a", "y"], _records("a"))
    assert out.shape == (1, 1, 3) and out[0, 0].tolist() == [0, 1, 0]


def test_group_by_image_names_the_problem():
    with pytest.raises(ValueError, match="no spoken caption.*'b'"):
        group_by_image(np.zeros((1, 2), np.float32), ["a"], _records("a", "b"))
    with pytest.raises(ValueError, match="2 embeddings for 3 utterances"):
        group_by_image(np.zeros((2, 2), np.float32), ["a", "a", "a"], _records("a"))
