"""A memory model of LongVA training per GPU: what a run needs before it starts.

Terms (bytes per GPU), for a Qwen2 language model of ``layers`` x ``hidden`` (MLP ``intermediate``,
``heads`` / ``kv_heads``, vocabulary ``vocab``), a CLIP tower of ``tower_params`` and a sample of
``tokens`` (visual and text):

- **weights**: every parameter in the load dtype (bf16: 2 bytes); ZeRO-3 shards them over the GPUs;
- **trainable state**: trainable parameters in fp32 with their gradient and Adam's two moments
  (16 bytes each); ZeRO-2/3 shard the optimizer state and gradients, ZeRO-3 the fp32 masters too;
- **checkpointed activations**: with activation checkpointing, each decoder layer's input
  (``tokens x hidden`` in the compute dtype) is kept, and one layer's activations are rebuilt at a
  time in the backward (attention via a flash/SDPA kernel: no ``tokens^2`` term; the MLP's
  ``tokens x intermediate`` x 3 dominate); without checkpointing every layer keeps them;
- **projector activations**: the projector runs on every CLIP patch before pooling (576 a frame) and
  trains in every stage, so its input and its two ``hidden``-wide activations are kept for the
  backward: ``frames x 576 x (tower_hidden + 3 hidden)`` x 2 bytes (the frozen tower keeps nothing;
  ``tune_vision_tower`` adds the tower's own activations, not modelled);
- **logits**: fp32 logits and their gradient, 8 bytes per position and vocabulary entry. Training
  computes them only at the labelled positions (the answers; ``logits_at_labels_only``);
  transformers' default computes every position's, which for LongVA (vocabulary 152,064) is the
  largest activation term of a long video (``labelled_tokens=None`` models that).

With ``sequence_parallel: S`` every token term is divided by S (each rank holds its shard); the
projector's activations are not (every rank of a group encodes the frames).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30

#: LongVA-7B (Qwen2-7B-Instruct extended to 224K + CLIP ViT-L/14-336 + mlp2x_gelu projector)
LONGVA_7B = {"layers": 28, "hidden": 3584, "intermediate": 18944, "heads": 28, "kv_heads": 4, "vocab": 152064,
             "tower_params": 303_500_000, "tower_hidden": 1024, "tokens_per_frame": 144, "patches_per_frame": 576}


def lora_parameters(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, r: int) -> int:
    """LoRA parameters on every linear layer of a Qwen2 decoder (q, k, v, o, gate, up, down): ``r (in + out)`` each."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    shapes = [(hidden, hidden), (hidden, kv), (hidden, kv), (hidden, hidden),
              (hidden, intermediate), (hidden, intermediate), (intermediate, hidden)]
    return layers * sum(r * (a + b) for a, b in shapes)


def language_model_parameters(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, vocab: int,
                              tied: bool = False) -> int:
    """A Qwen2 decoder's parameters (q/k/v biases, RMSNorms; embeddings and, unless ``tied``, the LM head)."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    attention = 2 * hidden * hidden + 2 * hidden * kv + hidden + 2 * kv  # q, o + k, v weights; q, k, v biases
    mlp = 3 * hidden * intermediate
    return layers * (attention + mlp + 2 * hidden) + (1 if tied else 2) * vocab * hidden + hidden


def projector_parameters(tower_hidden: int, hidden: int) -> int:
    return tower_hidden * hidden + hidden + hidden * hidden + hidden  # mlp2x_gelu


@dataclass
class MemoryEstimate:
    weights: float
    trainable_state: float
    activations: float
    projector_activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.trainable_state + self.activations + self.projector_activations + self.logits

    def gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 1) for k, v in {**self.__dict__, "total": self.total}.items()}


def estimate(frames: int, text_tokens: int = 256, stage: str = "lora", r: int = 64, gpus: int = 1, zero: int = 0,
             sequence_parallel: int = 1, checkpointing: bool = True, labelled_tokens: int | None = 64,
             model: dict | None = None) -> MemoryEstimate:
    """Bytes per GPU of one bf16 training step on one ``frames``-frame video (plus ``text_tokens``,
    of which ``labelled_tokens`` carry a loss; ``None``: logits at every position).

    ``zero``: the DeepSpeed ZeRO stage (0: none). Without DeepSpeed a full fine-tune holds fp32
    weights (autocast), LoRA and the projector stage a bf16 base with fp32 trainable parameters --
    what :func:`longva_plugins.training.run.load_dtype` loads.
    """
    m = dict(LONGVA_7B if model is None else model)
    lm = language_model_parameters(m["layers"], m["hidden"], m["intermediate"], m["heads"], m["kv_heads"], m["vocab"],
                                   m.get("tied", False))
    projector = projector_parameters(m["tower_hidden"], m["hidden"])
    total = lm + projector + m["tower_params"]
    if stage == "lora":
        trainable = lora_parameters(m["layers"], m["hidden"], m["intermediate"], m["heads"], m["kv_heads"], r) + projector
    elif stage == "projector":
        trainable = projector
    else:
        trainable = lm + projector
    shard = lambda at_stage: gpus if zero >= at_stage else 1  # noqa: E731
    if stage == "full" and zero:  # DeepSpeed: bf16 weights and gradients, fp32 master + Adam moments
        weights = total * 2 / shard(3)
        state = trainable * 2 / shard(2) + trainable * 12 / shard(1)
    elif stage == "full":  # fp32 weights under autocast, fp32 gradients and moments
        weights = total * 4
        state = trainable * (4 + 8)
    else:  # a frozen bf16 base; trainable fp32 weights, gradients and moments
        weights = (total - trainable) * 2
        state = trainable * (4 + 4 + 8) / (shard(1) if zero else 1)
    tokens = (frames * m["tokens_per_frame"] + text_tokens) / sequence_parallel
    layer = tokens * (4 * m["hidden"] + 3 * m["intermediate"]) * 2  # one layer's bf16 activations
    activations = tokens * m["hidden"] * 2 * m["layers"] + layer if checkpointing else layer * m["layers"]
    positions = tokens if labelled_tokens is None else min(labelled_tokens, tokens)
    logits = positions * m["vocab"] * 8  # fp32 logits and their gradient
    projector_acts = frames * m.get("patches_per_frame", 576) * (m["tower_hidden"] + 3 * m["hidden"]) * 2
    return MemoryEstimate(weights, state, activations, projector_acts, logits)


__all__ = ["GIB", "LONGVA_7B", "MemoryEstimate", "estimate", "language_model_parameters", "lora_parameters",
           "projector_parameters"]
