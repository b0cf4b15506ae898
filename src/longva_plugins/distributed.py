"""Groups of ranks and the collectives the rest of the package calls (the one home of
``torch.distributed`` outside the ring's point-to-point communicator).

Everything here works without a process group: one process is a group of one rank, collectives
then return their input. ``torch.distributed`` is imported lazily, so importing this module is
free.

- the *sequence-parallel group*: the ranks that split one sequence (training) or one KV cache
  (inference) between them, set once (:func:`set_sequence_parallel_group`) and read by the
  attention functions and the V-NIAH scorer;
- :func:`consecutive_groups`: ``world / size`` groups of ``size`` consecutive ranks (the ``longva``
  adapter's ``sequence_parallel``), data parallel across groups;
- collectives on a group: :func:`all_gather_objects`, :func:`all_agree`, :func:`all_reduce_sum`.
"""

from __future__ import annotations

import torch

_SEQUENCE_PARALLEL_GROUP = None


def is_distributed() -> bool:
    """A ``torch.distributed`` process group is initialised in this process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def group_size(group=None) -> int:
    """Ranks in ``group`` (``None``: the default group); 1 without a process group."""
    if not is_distributed():
        return 1
    import torch.distributed as dist

    return dist.get_world_size(group)


def group_rank(group=None) -> int:
    """This process's rank within ``group``; 0 without a process group."""
    if not is_distributed():
        return 0
    import torch.distributed as dist

    return dist.get_rank(group)


def set_sequence_parallel_group(group) -> None:
    """Use ``group`` (a ``torch.distributed`` process group) for the sequence-parallel attention
    functions and caches."""
    global _SEQUENCE_PARALLEL_GROUP
    _SEQUENCE_PARALLEL_GROUP = group


def get_sequence_parallel_group():
    """The group set with :func:`set_sequence_parallel_group` (``None``: the default group)."""
    return _SEQUENCE_PARALLEL_GROUP


def consecutive_groups(world_size: int, size: int) -> list:
    """``world_size / size`` process groups of ``size`` consecutive ranks. Every rank must call it
    (``new_group`` is collective)."""
    import torch.distributed as dist

    return [dist.new_group(list(range(start, start + size))) for start in range(0, world_size, size)]


def group_ranks(group) -> list[int]:
    """The global ranks of ``group``."""
    import torch.distributed as dist

    return dist.get_process_group_ranks(group)


def all_gather_objects(obj, group=None) -> list:
    """``obj`` of every rank of ``group``, in rank order (``[obj]`` in one process)."""
    world = group_size(group)
    if world == 1:
        return [obj]
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, obj, group=group)
    return gathered


def all_gather_tensors(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
    """``tensor`` of every rank of ``group`` (same shape on every rank), in rank order."""
    world = group_size(group)
    if world == 1:
        return [tensor]
    import torch.distributed as dist

    gathered = [torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device) for _ in range(world)]
    dist.all_gather(gathered, tensor.contiguous(), group=group)
    return gathered


def all_agree(flag: bool, group=None, device=None) -> bool:
    """``flag`` on every rank of ``group`` (a logical AND over the group); ``flag`` in one process.
    ``device``: where the collective's tensor lives (CUDA for NCCL)."""
    if group_size(group) == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], device=device if device is not None else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=group)
    return bool(value.item())


def exchange_tensors(parts: list[list[torch.Tensor]], group=None) -> None:
    """Every rank of ``group`` sends ``parts[its rank]`` to every other rank, which receives them in
    place into its own ``parts[that rank]`` (contiguous tensors of the same shapes on every rank):
    one batch of point-to-point sends and receives, nothing allocated per call (a gloo all-gather
    allocates its own output-sized buffers in its worker threads every time)."""
    import torch.distributed as dist

    group = group if group is not None else dist.group.WORLD
    world, me = dist.get_world_size(group), dist.get_rank(group)
    ops = []
    for rank in range(world):
        if rank == me:
            continue
        peer = dist.get_global_rank(group, rank)
        ops += [dist.P2POp(dist.isend, tensor, peer, group) for tensor in parts[me]]
        ops += [dist.P2POp(dist.irecv, tensor, peer, group) for tensor in parts[rank]]
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()


def all_reduce_sum(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Sum ``tensor`` over ``group`` in place (nothing in one process); returns it."""
    if group_size(group) > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor, group=group)
    return tensor


__all__ = [
    "all_agree",
    "all_gather_objects",
    "all_gather_tensors",
    "all_reduce_sum",
    "consecutive_groups",
    "exchange_tensors",
    "get_sequence_parallel_group",
    "group_rank",
    "group_ranks",
    "group_size",
    "is_distributed",
    "set_sequence_parallel_group",
]
