"""Ring attention: zigzag sequence parallelism for contexts that outgrow one device.

Public API: :func:`zigzag_ring_attention_func`, :func:`ring_attention_func`,
:func:`block_attention`, :func:`merge_partial`, the sharding helpers of :mod:`.sequence_parallel`,
the transformers attention names ``longva_causal`` (one process, linear memory),
``longva_ring_zigzag`` / ``longva_ring`` (training: the sequence
split over the ranks) and ``longva_sharded_kv`` with :class:`.sharded_kv.ShardedKVCache`
(inference: the KV cache split over the ranks), registered on import through ``AttentionInterface``.
"""

from longva_plugins.attention.block import block_attention, block_attention_backward, merge_partial
from longva_plugins.attention.ring import ring_attention_func
from longva_plugins.attention.sharded_kv import SHARDED_KV, ShardedKVCache
from longva_plugins.attention.sequence_parallel import shard_batch, zigzag_gather, zigzag_split, zigzag_unshard
from longva_plugins.attention.transformers_integration import CAUSAL, RING, ZIGZAG, register, set_sequence_parallel_group
from longva_plugins.attention.zigzag import zigzag_ring_attention_func

register()

__all__ = [
    "CAUSAL", "RING", "SHARDED_KV", "ShardedKVCache", "ZIGZAG", "block_attention", "block_attention_backward", "merge_partial", "ring_attention_func", "set_sequence_parallel_group",
    "shard_batch", "zigzag_gather", "zigzag_ring_attention_func", "zigzag_split", "zigzag_unshard",
]
