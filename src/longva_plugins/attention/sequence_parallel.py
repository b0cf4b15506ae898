"""Sequence-parallel plumbing: padding, zigzag/contiguous sharding and gathering of sequences.

Position ids are sharded exactly like the tokens, so RoPE sees the global positions; labels are
shifted *before* sharding (each local row's target may live on another rank); padding added to
reach a multiple of ``2W`` gets label ``-100`` so it never counts in the loss or scores.
"""

from __future__ import annotations

import torch

from longva_plugins.constants import IGNORE_INDEX
from longva_plugins.errors import SettingError



def refuse_sharded_padding(key_padding, group) -> None:
    """Key padding is supported in one process only; with a group of several ranks it is refused."""
    from longva_plugins.distributed import group_size

    if key_padding is not None and group_size(group) > 1:
        raise SettingError("key padding inside a sequence-parallel batch is not supported; shard unpadded sequences")


def pad_to_multiple(x: torch.Tensor, multiple: int, dim: int = 1, value=0) -> torch.Tensor:
    length = x.shape[dim]
    extra = (-length) % multiple
    if not extra:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, torch.full(shape, value, dtype=x.dtype, device=x.device)], dim=dim)


def _check(length: int, world: int, zigzag: bool) -> int:
    parts = 2 * world if zigzag else world
    if length % parts:
        raise SettingError(
            f"sequence length {length} cannot be split into {parts} equal chunks for world size {world}; "
            f"pad it to a multiple of {parts} first (pad_to_multiple / shard_batch pad=True)"
        )
    return length // parts


def zigzag_split(x: torch.Tensor, world: int, rank: int, dim: int = 1) -> torch.Tensor:
    """Rank ``rank``'s shard: chunks ``rank`` and ``2W-1-rank`` of ``2W`` along ``dim``."""
    size = _check(x.shape[dim], world, True)
    first = x.narrow(dim, rank * size, size)
    second = x.narrow(dim, (2 * world - 1 - rank) * size, size)
    return torch.cat([first, second], dim=dim)


def contiguous_split(x: torch.Tensor, world: int, rank: int, dim: int = 1) -> torch.Tensor:
    size = _check(x.shape[dim], world, False)
    return x.narrow(dim, rank * size, size)


def zigzag_unshard(shards: list[torch.Tensor], dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`zigzag_split` given every rank's shard in rank order."""
    world = len(shards)
    halves = [s.chunk(2, dim=dim) for s in shards]
    order = [halves[r][0] for r in range(world)] + [halves[r][1] for r in reversed(range(world))]
    return torch.cat(order, dim=dim)


def zigzag_gather(local: torch.Tensor, group=None, dim: int = 1) -> torch.Tensor:
    """All-gather the zigzag shards of ``group`` and reassemble the full sequence (no grad)."""
    from longva_plugins.distributed import all_gather_tensors

    return zigzag_unshard(all_gather_tensors(local, group), dim=dim)


def shard_batch(input_ids: torch.Tensor, labels: torch.Tensor | None, world: int, rank: int, pad_id: int = 0,
                position_ids: torch.Tensor | None = None, zigzag: bool = True, pad: bool = True) -> dict:
    """Shard a ``(B, L)`` batch for sequence parallelism.

    Returns ``input_ids``, ``position_ids`` and (when given) ``labels`` for this rank, already
    shifted so that ``labels[:, i]`` is the target of ``input_ids[:, i]`` (predict the next token),
    plus ``length`` (the unpadded length).
    """
    length = input_ids.shape[1]
    if position_ids is None:
        position_ids = torch.arange(length, device=input_ids.device).unsqueeze(0).expand_as(input_ids)
    shifted = None
    if labels is not None:
        shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)
    multiple = 2 * world if zigzag else world
    if pad:
        input_ids = pad_to_multiple(input_ids, multiple, value=pad_id)
        extra = input_ids.shape[1] - length
        tail = position_ids[:, -1:] + torch.arange(1, extra + 1, device=position_ids.device)
        position_ids = torch.cat([position_ids, tail], dim=1) if extra else position_ids
        shifted = pad_to_multiple(shifted, multiple, value=IGNORE_INDEX) if shifted is not None else None
    split = zigzag_split if zigzag else contiguous_split
    out = {"input_ids": split(input_ids, world, rank), "position_ids": split(position_ids, world, rank), "length": length}
    if shifted is not None:
        out["labels"] = split(shifted, world, rank)
    return out


__all__ = ["IGNORE_INDEX", "contiguous_split", "pad_to_multiple", "shard_batch", "zigzag_gather", "zigzag_split",
           "zigzag_unshard"]
