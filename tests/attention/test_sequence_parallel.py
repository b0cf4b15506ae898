"""Sharding helpers: zigzag split/unshard, label shifting, padding, clear errors."""

from __future__ import annotations

import pytest
import torch

from longva_plugins.attention.sequence_parallel import (
    IGNORE_INDEX,
    pad_to_multiple,
    shard_batch,
    zigzag_split,
    zigzag_unshard,
)
from longva_plugins.errors import SettingError


def test_zigzag_split_takes_chunks_r_and_2w_minus_1_minus_r():
    x = torch.arange(16).unsqueeze(0)
    assert zigzag_split(x, 4, 0).tolist() == [[0, 1, 14, 15]]
    assert zigzag_split(x, 4, 1).tolist() == [[2, 3, 12, 13]]
    assert zigzag_split(x, 4, 3).tolist() == [[6, 7, 8, 9]]
    assert torch.equal(zigzag_unshard([zigzag_split(x, 4, r) for r in range(4)]), x)


def test_unsplittable_length_names_the_lengths():
    with pytest.raises(SettingError, match="length 10 .* 8 equal chunks .* world size 4"):
        zigzag_split(torch.zeros(1, 10), 4, 0)


def test_shard_batch_shifts_labels_before_sharding_and_pads():
    ids = torch.arange(10, 20).unsqueeze(0)  # length 10 -> padded to 12 for W=3? use W=2 -> 12
    labels = ids.clone()
    shards = [shard_batch(ids, labels, world=2, rank=r, pad_id=0) for r in range(2)]
    full_labels = zigzag_unshard([s["labels"] for s in shards])
    full_ids = zigzag_unshard([s["input_ids"] for s in shards])
    full_pos = zigzag_unshard([s["position_ids"] for s in shards])
    assert full_ids.shape[1] == 12 and full_ids[0, 10:].tolist() == [0, 0]
    assert full_labels[0, :9].tolist() == list(range(11, 20))  # next-token targets
    assert full_labels[0, 9:].tolist() == [IGNORE_INDEX] * 3  # last token and padding ignored
    assert full_pos[0].tolist() == list(range(12))
    assert shards[0]["length"] == 10


def test_pad_to_multiple():
    assert pad_to_multiple(torch.ones(1, 5), 4, value=7).tolist() == [[1, 1, 1, 1, 1, 7, 7, 7]]
    assert pad_to_multiple(torch.ones(1, 8), 4).shape == (1, 8)
