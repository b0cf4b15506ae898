"""The ring communicator: send to the next rank, receive from the previous one, overlapped.

Works on any process group (the ring follows the group's ranks in order) and any backend with
point-to-point support (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from longva_plugins.distributed import is_distributed


class RingComm:
    """Point-to-point exchange along the ring of ``group``.

    ``start(tensors)`` posts sends of ``tensors`` to the next rank and receives of same-shaped
    buffers from the previous rank; ``wait()`` returns the received tensors. Between the two the
    caller computes on the current block, which overlaps compute and transfer.
    """

    def __init__(self, group=None):
        self.group = group
        self._single = not is_distributed()
        # Without a process group the ring has one member: sends come straight back.
        self.world_size = 1 if self._single else dist.get_world_size(group)
        self.rank = 0 if self._single else dist.get_rank(group)
        if self._single:
            self._requests, self._buffers = [], []
            return
        ranks = dist.get_process_group_ranks(group) if group is not None else list(range(self.world_size))
        self.next_global = ranks[(self.rank + 1) % self.world_size]
        self.prev_global = ranks[(self.rank - 1) % self.world_size]
        self._requests = []
        self._buffers: list[torch.Tensor] = []
        self._sending: list[torch.Tensor] = []

    def start(self, tensors: list[torch.Tensor]) -> None:
        if self._requests:
            raise RuntimeError("RingComm.start called twice without wait()")
        if self._single or self.world_size == 1:
            self._buffers = [t.clone() for t in tensors]
            return
        # Backends take contiguous tensors only; attention K/V are often transposed views
        # (projection output viewed as heads), so send contiguous copies and receive into
        # contiguous buffers, both kept alive until wait().
        self._sending = [t.contiguous() for t in tensors]
        self._buffers = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in tensors]
        ops = [dist.P2POp(dist.isend, t, self.next_global, self.group) for t in self._sending]
        ops += [dist.P2POp(dist.irecv, b, self.prev_global, self.group) for b in self._buffers]
        self._requests = dist.batch_isend_irecv(ops)

    def wait(self) -> list[torch.Tensor]:
        for request in self._requests:
            request.wait()
        self._requests, self._sending = [], []
        received, self._buffers = self._buffers, []
        return received


__all__ = ["RingComm"]
