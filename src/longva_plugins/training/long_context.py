"""Long-context text training (the paper's first stage): packing and a sequence-parallel loss.

Documents are concatenated with a separator token into fixed-length sequences (the paper packs
SlimPajama documents with BOS separators into 224K-token sequences). Position ids run
continuously over a packed sequence, as in the paper's recipe (documents see their predecessors;
no per-document reset). The loss is computed with the sequence split over the ranks of a process
group by the zigzag ring attention kernels.
"""

from __future__ import annotations

import torch

from longva_plugins.attention.sequence_parallel import shard_batch
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


def sequence_parallel_loss(model, input_ids: torch.Tensor, group=None, pad_id: int = 0,
                           labels: torch.Tensor | None = None):
    """Next-token loss of ``input_ids (B, L)`` with the sequence split over ``group``.

    Every rank passes the same full batch; each keeps its zigzag shard. ``labels`` (default: the
    inputs) are aligned with the inputs, ``-100`` where no loss is taken (shifted here). Returns ``(loss, tokens)``
    where ``loss`` is this rank's *sum* over its tokens divided by the global token count, so that
    summing gradients over ranks (``all_reduce``) gives the gradient of the global mean loss.
    """
    world, rank = group_size(group), group_rank(group)
    device = next(model.parameters()).device
    shard = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in shard_batch(input_ids, input_ids if labels is None else labels, world, rank, pad_id=pad_id).items()}
    logits = model(input_ids=shard["input_ids"], position_ids=shard["position_ids"]).logits
    labels = shard["labels"]
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
