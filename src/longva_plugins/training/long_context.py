"""Long-context training split over ranks: the paper's first stage (long text) and, with
``sequence_parallel: S`` in a training config, long-video fine-tuning (the sequence of one sample,
visual tokens and text, sharded over S ranks).

Documents are concatenated with a separator token into fixed-length sequences (the paper packs
SlimPajama documents with BOS separators into 224K-token sequences). Position ids run
continuously over a packed sequence, as in the paper's recipe (documents see their predecessors;
no per-document reset). The loss is computed with the sequence split over the ranks of a process
group by the zigzag ring attention kernels.
"""

from __future__ import annotations

import torch

from longva_plugins.attention.sequence_parallel import pad_to_multiple, shard_batch, zigzag_split
from longva_plugins.constants import IGNORE_INDEX
from longva_plugins.distributed import all_reduce_sum, group_rank, group_size


def pack_documents(documents: list[list[int]], seq_len: int, separator_id: int) -> torch.Tensor:
    """Pack token lists into ``(N, seq_len)`` rows, ``separator_id`` between documents; the tail
    that does not fill a row is dropped."""
    stream: list[int] = []
    for doc in documents:
        stream.extend(doc)
        stream.append(separator_id)
    rows = len(stream) // seq_len
    return torch.tensor(stream[: rows * seq_len], dtype=torch.long).view(rows, seq_len)


def sequence_parallel_loss(model, input_ids: torch.Tensor | None = None, group=None, pad_id: int = 0,
                           labels: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None):
    """Next-token loss of ``input_ids (B, L)`` -- or of ``inputs_embeds (B, L, D)``, a multimodal
    sequence whose visual tokens are already in place -- with the sequence split over ``group``.

    Every rank passes the same full batch; each keeps its zigzag shard. ``labels`` (default: the
    inputs; required with ``inputs_embeds``) are aligned with the inputs, ``-100`` where no loss is
    taken (shifted here, before sharding). Returns ``(loss, tokens)`` where ``loss`` is this rank's
    *sum* over its tokens divided by the group's token count, so that summing gradients over the
    group's ranks gives the gradient of the whole sequence's mean loss.
    """
    world, rank = group_size(group), group_rank(group)
    device = next(model.parameters()).device
    if inputs_embeds is not None:
        if labels is None:
            raise ValueError("sequence_parallel_loss over inputs_embeds needs labels")
        holder = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        shard = shard_batch(holder, labels, world, rank)
        embeds = zigzag_split(pad_to_multiple(inputs_embeds, 2 * world, dim=1), world, rank)
        inputs = {"inputs_embeds": embeds.to(device)}
    else:
        shard = shard_batch(input_ids, input_ids if labels is None else labels, world, rank, pad_id=pad_id)
        inputs = {"input_ids": shard["input_ids"].to(device)}
    # no KV cache in a training forward; the ring kernels apply the causal zigzag mask themselves
    logits = model(**inputs, position_ids=shard["position_ids"].to(device), use_cache=False).logits
    labels = shard["labels"].to(device)
    local = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                                              ignore_index=IGNORE_INDEX, reduction="sum")
    # on the model's device: NCCL all-reduces CUDA tensors only
    tokens = (labels != IGNORE_INDEX).sum().to(torch.float32)
    all_reduce_sum(tokens, group)
    return local / tokens, tokens


def all_reduce_gradients(model, group=None) -> None:
    """Sum parameter gradients over the sequence-parallel group (each rank saw part of the tokens)."""
    if group_size(group) == 1:
        return
    for param in model.parameters():
        if param.grad is not None:
            all_reduce_sum(param.grad, group)


__all__ = ["all_reduce_gradients", "pack_documents", "sequence_parallel_loss"]
