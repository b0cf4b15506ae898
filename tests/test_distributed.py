"""longva_plugins.distributed: one process is a group of one; on 2 gloo ranks the collectives
agree with torch.distributed's own results."""

from __future__ import annotations

import json

import torch
import torch.multiprocessing as mp

from longva_plugins import distributed as D


def test_one_process_is_a_group_of_one():
    assert not D.is_distributed()
    assert D.group_size() == 1 and D.group_rank() == 0
    assert D.all_gather_objects({"a": 1}) == [{"a": 1}]
    x = torch.arange(3.0)
    assert D.all_gather_tensors(x)[0] is x
    assert D.all_agree(True) and not D.all_agree(False)
    assert torch.equal(D.all_reduce_sum(x.clone()), x)


def test_sequence_parallel_group_is_remembered():
    before = D.get_sequence_parallel_group()
    try:
        marker = object()
        D.set_sequence_parallel_group(marker)
        assert D.get_sequence_parallel_group() is marker
        from longva_plugins.attention.transformers_integration import get_sequence_parallel_group

        assert get_sequence_parallel_group() is marker, "the attention package reads the one group"
    finally:
        D.set_sequence_parallel_group(before)


def _worker(rank, world, store, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        groups = D.consecutive_groups(world, 1)  # one group per rank
        result = {
            "size": D.group_size(), "rank": D.group_rank(),
            "objects": D.all_gather_objects(f"r{rank}"),
            "tensors": [t.tolist() for t in D.all_gather_tensors(torch.tensor([rank, 10 + rank]))],
            "agree_all_true": D.all_agree(True), "agree_one_false": D.all_agree(rank == 0),
            "sum": D.all_reduce_sum(torch.tensor([rank + 1.0])).item(),
            "own_group": D.group_ranks(groups[rank]), "own_group_size": D.group_size(groups[rank]),
        }
        with open(f"{out}/rank{rank}.json", "w") as handle:
            json.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_collectives_on_two_gloo_ranks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["size"] == 2 and got["rank"] == rank
        assert got["objects"] == ["r0", "r1"]
        assert got["tensors"] == [[0, 10], [1, 11]]
        assert got["agree_all_true"] is True and got["agree_one_false"] is False
        assert got["sum"] == 3.0
        assert got["own_group"] == [rank] and got["own_group_size"] == 1
