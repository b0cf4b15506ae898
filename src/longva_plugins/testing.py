"""A tiny random LongVA checkpoint in the real on-disk layout, for tests, examples and the demo.

Same files as ``lmms-lab/LongVA-7B`` (flat ``config.json`` with the ``mm_*`` fields, sharded
``model.safetensors-*`` with an index, Qwen2-style tokenizer files, ``generation_config.json``)
plus ``vision_tower_config.json`` describing the tiny CLIP tower. Weights are random but of unit
scale (like the golden fixture) so logits are well spread and argmaxes are stable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from longva_plugins.fileio import default_cache_dir

TINY_VERSION = "v1"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# A small corpus so the byte-level BPE learns merges for the words prompts actually use.
_CORPUS = """
You are a helpful assistant. system user assistant image video frame frames question answer
What is shown in the image? Describe the video. Answer with the option's letter from the given
choices directly. Find the frame with the needle. What colour is the shape? red green blue yellow
orange purple white black circle square triangle star number letter word the a an of in on at to
is are was were what which who where when how many much one two three four five six seven eight
nine ten zero yes no A B C D E The answer is Options: Question: Please answer briefly.
"""


def build_tiny_tokenizer(vocab_size: int = 480, corpus: str | None = None):
    """A byte-level BPE tokenizer with Qwen2's special tokens, as a transformers tokenizer
    (learned from ``corpus``, default: a few prompt words)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    core.train_from_iterator([_CORPUS] * 4 if corpus is None else [corpus], trainer=trainer)
    core.add_special_tokens(SPECIAL_TOKENS)  # after the BPE vocabulary, in Qwen2's order
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=262144,
        padding_side="right",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    return tokenizer


def _init_unit_scale(model: torch.nn.Module, seed: int) -> None:
    """Unit-scale random weights in ``named_parameters()`` order (fixture recipe)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            shape = param.shape
            if name.endswith("class_embedding"):
                value = torch.randn(shape, generator=gen)
            elif "position_embedding" in name:
                value = 0.5 * torch.randn(shape, generator=gen)
            elif "embed_tokens" in name:
                value = torch.randn(shape, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                value = 1 + 0.1 * torch.randn(shape, generator=gen)
            elif name.endswith("bias"):
                value = 0.1 * torch.randn(shape, generator=gen)
            else:  # linear and conv weights: N(0, 1/fan_in)
                fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else shape[0]
                value = torch.randn(shape, generator=gen) / fan_in**0.5
            param.copy_(value)


def make_tiny_checkpoint(out_dir: str | os.PathLike, seed: int = 0, num_shards: int = 2,
                         hidden_size: int = 64, num_layers: int = 2, vocab_size: int = 512,
                         tokenizer=None, vision: dict | None = None, unit_scale: bool = True,
                         tower_name: str = "tiny-random-clip-vit-336", pool_stride: int = 2) -> Path:
    """Write a random tiny LongVA checkpoint in the real layout to ``out_dir``; return its path.

    Deterministic by ``seed``. The language model has ``hidden_size`` width, ``num_layers``
    layers, 4 query and 2 key/value heads; the CLIP tower is 336 px, patch 14 (576 patches),
    width 32, 2 layers (``vision`` overrides those CLIPVisionConfig fields). ``num_shards > 1``
    writes sharded safetensors with an index. ``unit_scale`` draws unit-scale weights (stable
    argmaxes for tests); otherwise transformers' own initialisation (a model to train).
    ``pool_stride`` is UniRes' ``mm_spatial_pool_stride`` (LongVA: 2).
    """
    from transformers import CLIPVisionConfig, GenerationConfig

    from longva_plugins.models.longva.configuration_longva import LongVAConfig, unires_pinpoints
    from longva_plugins.models.longva.modeling_longva import LongVAForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tiny_tokenizer()
    if len(tokenizer) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    vision = CLIPVisionConfig(**{
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 336,
        "patch_size": 14, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 32, **(vision or {}),
    })
    config = LongVAConfig(
        vision_config=vision,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=262144,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_sliding_window=False,
        sliding_window=None,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        mm_hidden_size=vision.hidden_size,
        image_grid_pinpoints=unires_pinpoints(),
        mm_vision_tower=tower_name,
        mm_spatial_pool_stride=pool_stride,
    )
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LongVAForCausalLM(config)
    finally:
        torch.random.set_rng_state(torch_state)
    if unit_scale:
        _init_unit_scale(model, seed)
    total_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    shard = max(total_bytes // max(num_shards, 1) + 1024, 1024)
    model.save_pretrained(out, max_shard_size=shard if num_shards > 1 else "10GB", safe_serialization=True)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, do_sample=False
    ).save_pretrained(out)
    return out


def ensure_tiny_checkpoint(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """The tiny checkpoint under ``cache_dir`` (default: ``$LONGVA_PLUGINS_CACHE`` or
    ``~/.cache/longva_plugins``), built once. Concurrent callers never see a partial folder:
    it is written to a temporary folder beside the target, then renamed into place."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"tiny-longva-{TINY_VERSION}-seed{seed}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        make_tiny_checkpoint(staging, seed=seed)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner is complete
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["build_tiny_tokenizer", "ensure_tiny_checkpoint", "make_tiny_checkpoint"]
