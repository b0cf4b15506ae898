"""The ``longva`` model for lmms-eval: thin glue between lmms-eval requests and the LongVA model.

Registered through the ``lmms_eval.models`` entry point (model id ``longva``, alias ``longva_hf``)
and used as::

    lmms-eval eval --model longva --model_args pretrained=lmms-lab/LongVA-7B,max_frames_num=128 \
        --tasks longva_videomme

It accepts the model_args of lmms-eval's built-in LongVA adapter, with LongVA's real defaults
(``conv_template=qwen_1_5``, bf16 on CUDA / fp32 on CPU). All model maths lives in
:mod:`longva_plugins.models.longva`; visual inputs are turned into embedding blocks by
:mod:`longva_plugins.lmms_eval_plugin.visuals`.

A sample whose media cannot be read (missing, corrupt, zero-frame video; undecodable image) or
whose prompt exceeds the context gets an empty answer (loglikelihood ``(inf, False)``), is logged
with the file name and counted in :attr:`LongVA.failures`; the run goes on.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from tqdm import tqdm

from longva_plugins.lmms_eval_plugin.protocols import ScoresItself
from longva_plugins.lmms_eval_plugin.settings import check_settings as _check_settings
from longva_plugins.lmms_eval_plugin.settings import stop_token_ids as _stop_token_ids
from longva_plugins.lmms_eval_plugin.visuals import encode_visuals
from longva_plugins.distributed import is_distributed
from longva_plugins.errors import ContextLengthError, SampleError, SettingError
from longva_plugins.lmms_eval_plugin.compat import settings_checked

logger = logging.getLogger(__name__)


class LongVA(lmms):
    """LongVA for lmms-eval (generate_until, loglikelihood, generate_until_multi_round).

    Args:
        pretrained: checkpoint folder or hub id (``lmms-lab/LongVA-7B``).
        device: ``cuda``, ``cuda:N`` or ``cpu`` (default: CUDA when available; under torchrun the
            local rank's GPU).
        device_map: ``auto`` to spread the model over all visible GPUs.
        torch_dtype / dtype: ``bfloat16`` (CUDA default), ``float32`` (CPU default), ``float16``.
        attn_implementation: any transformers attention name (``sdpa``, ``eager``,
            ``flash_attention_2``, or a registered ring-attention name). Default: ``longva_causal``
            on CPU (linear memory over long KV caches), transformers' choice on CUDA.
        conv_template: ``qwen_1_5`` (LongVA's; ChatML). Other templates are refused.
        max_frames_num: frames sampled uniformly per video (reference ``linspace`` rule).
        max_fps: optional cap on sampled frames per second.
        video_decode_backend: ``pyav`` (default), ``decord``, ``torchcodec`` or a plugin's name.
        mm_spatial_pool_stride / mm_spatial_pool_mode: override the checkpoint's pooling.
        encode_chunk_size: frames per CLIP batch. prefill_chunk_size: tokens per prefill chunk.
        system_prompt: system message (default ``You are a helpful assistant.``).
        peft: a PEFT adapter folder to apply on top of ``pretrained``.
        sequence_parallel: under ``torchrun``, groups of this many consecutive ranks share one KV
            cache split over them (``longva_sharded_kv``): each group runs the union of its ranks'
            requests together; ``world size / sequence_parallel`` groups run in data parallel.
    """

    is_simple = True

    @settings_checked
    def __init__(self, pretrained: str = "lmms-lab/LongVA-7B", device: str | None = None, device_map: str | None = None,
                 batch_size: int | str = 1, torch_dtype: str | None = None, dtype: str | None = None,
                 attn_implementation: str | None = None, conv_template: str = "qwen_1_5", max_frames_num: int = 32,
                 max_fps: float | None = None, video_decode_backend: str | None = None,
                 mm_spatial_pool_stride: int | None = None, mm_spatial_pool_mode: str | None = None,
                 encode_chunk_size: int = 16, prefill_chunk_size: int | None = None, system_prompt: str | None = None,
                 peft: str | None = None, allow_length_extrapolation: bool = False, sequence_parallel: int = 1,
                 **kwargs) -> None:
        super().__init__()
        # Every setting is checked before the (possibly minutes-long) load, and all problems are
        # reported together: a wrong setting must stop the run, never turn into empty answers.
        settings = _check_settings(
            kwargs, known=MODEL_ARGS, conv_template=conv_template, batch_size=batch_size, max_frames_num=max_frames_num,
            max_fps=max_fps, video_decode_backend=video_decode_backend,
            mm_spatial_pool_stride=mm_spatial_pool_stride, mm_spatial_pool_mode=mm_spatial_pool_mode,
            encode_chunk_size=encode_chunk_size, prefill_chunk_size=prefill_chunk_size,
            dtype=torch_dtype or dtype, device=device, device_map=device_map,
            allow_length_extrapolation=allow_length_extrapolation, peft=peft,
            sequence_parallel=sequence_parallel, attn_implementation=attn_implementation,
        )
        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        device = self._choose_device(device)
        self._sp = settings["sequence_parallel"]
        self._sp_group, self._sp_rank = None, 0
        if self._sp > 1:
            attn_implementation = self._join_sequence_parallel_group()
        elif attn_implementation is None and str(device).startswith("cpu"):
            attn_implementation = _cpu_attention()
        from longva_plugins.lmms_eval_plugin.compat import check_output_path

        check_output_path()  # a results folder that cannot be written stops the run now, not at its end
        self._load(pretrained, device, device_map, torch_dtype or dtype, attn_implementation, peft)
        self._apply_settings(settings, mm_spatial_pool_mode, video_decode_backend, system_prompt)
        #: ``(task, doc_id, message)`` for every sample answered empty because of bad input.
        self.failures: list[tuple[str, Any, str]] = []
        if self._world_size > 1 and not is_distributed() and os.environ.get("MASTER_ADDR"):
            from accelerate import Accelerator

            self.accelerator = Accelerator()

    def _choose_device(self, device: str | None) -> str:
        """The device setting, defaulted: CUDA when available (under torchrun: the local rank's GPU)."""
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device is None:
            return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and self._world_size > 1:
            return f"cuda:{local_rank}"
        return device

    def _load(self, pretrained: str, device: str, device_map: str | None, dtype: str | None,
              attn_implementation: str | None, peft: str | None) -> None:
        """Model (with a PEFT adapter merged when given) and processor, on ``device``."""
        from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor

        load_map = device_map if device_map == "auto" else (None if str(device).startswith("cpu") else device)
        self.model = LongVAForCausalLM.from_pretrained(
            pretrained, torch_dtype=dtype, device_map=load_map, attn_implementation=attn_implementation
        )
        if peft:
            self.model = _apply_peft(self.model, peft)
        if load_map is None:
            self.model.to(device)
        self._device = torch.device(device) if device_map != "auto" else self.model.model.embed_tokens.weight.device
        self.processor = LongVAProcessor.from_pretrained(pretrained)
        self.model.valid_vocab_size = len(self.processor)
        from longva_plugins.lmms_eval_plugin.task_utils.common import set_checkpoint_defaults

        set_checkpoint_defaults(getattr(self.model.config, "eval_defaults", None), pretrained)
        from longva_plugins.lmms_eval_plugin.compat import record_model_identity

        record_model_identity(checkpoint_identity(pretrained, peft))

    def _apply_settings(self, settings: dict, mm_spatial_pool_mode, video_decode_backend, system_prompt) -> None:
        """The checked settings onto the adapter and the model; a frame count that can never fit
        the context is a setting error (not one empty answer per sample)."""
        from longva_plugins.models.longva.processing_longva import DEFAULT_SYSTEM

        self.model.allow_length_extrapolation = settings["allow_length_extrapolation"]
        if settings["mm_spatial_pool_stride"] is not None:
            self.model.config.mm_spatial_pool_stride = settings["mm_spatial_pool_stride"]
        if mm_spatial_pool_mode is not None:
            self.model.config.mm_spatial_pool_mode = mm_spatial_pool_mode
        self.batch_size_per_gpu = settings["batch_size"]
        self.max_frames_num = settings["max_frames_num"]
        self.max_fps = settings["max_fps"]
        self.video_decode_backend = video_decode_backend
        self.encode_chunk_size = settings["encode_chunk_size"]
        self.prefill_chunk_size = settings["prefill_chunk_size"]
        self.system_prompt = system_prompt if system_prompt is not None else DEFAULT_SYSTEM
        self.stop_token_ids = _stop_token_ids(self.model, self.processor)
        try:
            self.model.check_length(self.max_frames_num * self.model.config.tokens_per_frame)
        except ContextLengthError as exc:
            raise SettingError(f"max_frames_num={self.max_frames_num}: {exc}") from None

    # ------------------------------------------------------------------ sequence parallelism
    def _join_sequence_parallel_group(self) -> str:
        """Split the ranks into groups of ``sequence_parallel`` consecutive ranks that share one KV
        cache (``longva_sharded_kv``); returns the attention name to load the model with."""
        from accelerate import Accelerator

        from longva_plugins.attention import SHARDED_KV
        from longva_plugins.distributed import consecutive_groups, group_ranks, set_sequence_parallel_group

        if not is_distributed():
            self.accelerator = Accelerator()  # initialises the process group torchrun describes
        self._sp_group = consecutive_groups(self._world_size, self._sp)[self._rank // self._sp]
        self._sp_rank = self._rank % self._sp
        set_sequence_parallel_group(self._sp_group)
        logger.info("longva: rank %d shares its KV cache with ranks %s (sequence_parallel=%d)", self._rank,
                    group_ranks(self._sp_group), self._sp)
        return SHARDED_KV

    def _with_group_requests(self, items: list) -> list[tuple[int, Any]]:
        """``(owner, item)`` for this rank's items and, under sequence parallelism, those of every
        rank of its group, in the same order on every rank (each rank then runs them all, together)."""
        if self._sp == 1:
            return [(0, item) for item in items]
        from longva_plugins.distributed import all_gather_objects

        gathered = all_gather_objects(items, self._sp_group)
        return [(owner, item) for owner, part in enumerate(gathered) for item in part]

    # ------------------------------------------------------------------ lmms-eval properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # ------------------------------------------------------------------ request helpers
    def _doc(self, task, split, doc_id):
        return self.task_dict[task][split][doc_id]

    def _visuals(self, doc_to_visual, task, split, doc_id) -> list:
        if doc_to_visual is None:
            return []
        visuals = doc_to_visual(self._doc(task, split, doc_id))
        if visuals is None:
            return []
        flat = []
        for item in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
            flat.extend(item if isinstance(item, (list, tuple)) else [item])
        return flat

    def _prompt_embeds(self, messages: list[dict], blocks: list[torch.Tensor]) -> torch.Tensor:
        prompt = self.processor.apply_chat_template(messages, system=self.system_prompt)
        ids = self.processor.tokenize(prompt)
        embeds = self.model.embed_multimodal(ids, blocks)
        self.model.check_length(embeds.shape[1])
        return embeds

    def _user_message(self, context: str, n_blocks: int) -> dict:
        if n_blocks and "<image>" not in context:
            context = " ".join(["<image>"] * n_blocks) + "\n" + context
        return {"role": "user", "content": context}

    def _record_failure(self, task, doc_id, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.failures.append((task, doc_id, message))
        logger.warning("longva: %s doc %s answered empty: %s", task, doc_id, message)

    def _report_failures(self, kind: str, start: int) -> None:
        new = self.failures[start:]
        if new:
            logger.warning(
                "longva: %d of this run's %s samples had unusable input and were answered empty (scored as wrong): %s",
                len(new), kind, "; ".join(f"{t}/{d}: {m}" for t, d, m in new[:20]) + (" ..." if len(new) > 20 else ""),
            )

    def _encode(self, visuals) -> list[torch.Tensor]:
        return encode_visuals(self, visuals)

    def _generate(self, embeds: torch.Tensor | list[torch.Tensor], gen_kwargs: dict) -> str | list[str]:
        """Generate for one ``(1, L, D)`` prompt, or a list of them as one left-padded batch."""
        batch = embeds if isinstance(embeds, list) else [embeds]
        kwargs = dict(gen_kwargs)
        until = kwargs.pop("until", None) or []
        if isinstance(until, str):
            until = [until]
        max_new_tokens = int(kwargs.pop("max_new_tokens", 1024))
        temperature = float(kwargs.pop("temperature", 0) or 0)
        do_sample = bool(kwargs.pop("do_sample", temperature > 0)) and temperature > 0
        top_p = kwargs.pop("top_p", None)
        num_beams = int(kwargs.pop("num_beams", 1) or 1)
        extra = {k: kwargs[k] for k in ("repetition_penalty", "top_k", "length_penalty") if k in kwargs}
        if do_sample:
            extra.update(temperature=temperature, **({"top_p": top_p} if top_p is not None else {}))
        common = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, num_beams=num_beams,
                      eos_token_id=self.stop_token_ids, pad_token_id=self.processor.pad_token_id, **extra)
        if len(batch) == 1:
            new_ids = self.model.generate_from_embeds(batch[0], prefill_chunk_size=self.prefill_chunk_size, **common)
        else:
            new_ids = self._generate_batch(batch, common)
        texts = []
        for row in new_ids:
            text = self.processor.decode(row.tolist(), skip_special_tokens=True)
            for stop in until:
                if stop and stop in text:
                    text = text.split(stop)[0]
            texts.append(text.strip())
        return texts if isinstance(embeds, list) else texts[0]

    def _generate_batch(self, batch: list[torch.Tensor], common: dict) -> torch.Tensor:
        """Left-pad the prompts (zeros, masked out) and generate them together."""
        length = max(e.shape[1] for e in batch)
        self.model.check_length(length + common["max_new_tokens"])
        first = batch[0]
        embeds = first.new_zeros(len(batch), length, first.shape[-1])
        mask = torch.zeros(len(batch), length, dtype=torch.long, device=first.device)
        for i, e in enumerate(batch):
            embeds[i, length - e.shape[1]:] = e[0]
            mask[i, length - e.shape[1]:] = 1
        with torch.no_grad():
            return self.model.generate(inputs_embeds=embeds, attention_mask=mask,
                                       logits_processor=self.model.vocabulary_processors(), **common)

    # ------------------------------------------------------------------ lmms-eval API
    @settings_checked
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy (or sampled) generation; consecutive requests with the same generation settings
        run as one batch of up to ``batch_size`` (not with ``prefill_chunk_size`` or
        ``sequence_parallel``, whose groups run the union of their ranks' requests together)."""
        results: list[str | None] = [None] * len(requests)
        start = len(self.failures)
        batch = _GenerationBatch(self, results, 1 if self.prefill_chunk_size or self._sp > 1 else self.batch_size_per_gpu)
        for owner, (index, context, gen_kwargs, task, doc_id, visuals) in tqdm(
                self._with_group_requests(self._generation_items(requests, results)), disable=self.rank != 0,
                desc="longva generate"):
            mine = owner == self._sp_rank
            try:
                blocks = self._encode(visuals)
                embeds = self._prompt_embeds([self._user_message(context, len(blocks))], blocks)
            except SampleError as exc:
                if mine:  # a group's other ranks run this sample too; its owner reports it
                    self._record_failure(task, doc_id, exc)
                    results[index] = ""
                continue
            batch.add(index if mine else None, embeds, gen_kwargs)
        batch.flush()
        self._report_failures("generate_until", start)
        return [r if r is not None else "" for r in results]

    def _generation_items(self, requests: list[Instance], results: list) -> list[tuple]:
        """``(index, context, gen_kwargs, task, doc_id, visuals)`` per request whose visuals resolve;
        the others are answered empty (and recorded) in ``results`` at once."""
        items = []
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            try:
                items.append((index, context, gen_kwargs, task, doc_id, self._visuals(doc_to_visual, task, split, doc_id)))
            except SampleError as exc:
                self._record_failure(task, doc_id, exc)
                results[index] = ""
        return items

    @settings_checked
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Teacher-forced: ``(mean negative log-likelihood, continuation is the greedy argmax)``.

        Requests whose visual scores itself (V-NIAH cells) run in the order of its
        ``longva_sort_key`` so that consecutive cells share one KV cache; results keep the order
        of the requests. Under ``sequence_parallel`` the ranks of a group run the union of their
        requests together (one KV cache split over them); each keeps its own results.
        """
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        start = len(self.failures)
        prepared = []  # (sort key, index, context, continuation, task, doc_id, visuals)
        for index, request in enumerate(requests):
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            try:
                visuals = self._visuals(doc_to_visual, task, split, doc_id)
                continuation = (doc_to_target if isinstance(doc_to_target, str)
                                else doc_to_target(self._doc(task, split, doc_id)))
            except SampleError as exc:
                self._record_failure(task, doc_id, exc)
                results[index] = (float("inf"), False)
                continue
            scorer = next((v for v in visuals if isinstance(v, ScoresItself)), None)
            key = (1, scorer.longva_sort_key()) if scorer is not None else (0, (index,))
            prepared.append((key, index, context, str(continuation), task, doc_id, visuals))
        work = self._with_group_requests(prepared)
        work.sort(key=lambda item: (item[1][0], item[0], item[1][1]))
        self._plan_self_scoring([v for _, (_, _, _, _, _, _, visuals) in work for v in visuals])
        for owner, (_, index, *sample) in tqdm(work, disable=self.rank != 0, desc="longva loglikelihood"):
            result = self._loglikelihood_one(*sample, record=owner == self._sp_rank)
            if owner == self._sp_rank:
                results[index] = result
        self._report_failures("loglikelihood", start)
        return results

    def _plan_self_scoring(self, visuals: list) -> None:
        """Hand every visual that scores itself to its class's ``longva_plan`` (once per class)
        before the first is scored: V-NIAH sizes its KV cache for the longest cell there."""
        by_class: dict = {}
        for visual in visuals:
            if isinstance(visual, ScoresItself):
                by_class.setdefault(type(visual), []).append(visual)
        for cls, members in by_class.items():
            cls.longva_plan(self.model, self.processor, members, **self._scorer_options())

    def _scorer_options(self) -> dict:
        return {"prefill_chunk_size": self.prefill_chunk_size, "encode_chunk_size": self.encode_chunk_size}

    def _loglikelihood_one(self, context: str, continuation: str, task, doc_id, visuals: list,
                           record: bool = True) -> tuple[float, bool]:
        try:
            scorer = next((v for v in visuals if isinstance(v, ScoresItself)), None)
            if scorer is not None:  # the visual scores itself (V-NIAH: cached, resumable cells)
                return scorer.longva_loglikelihood(self.model, self.processor, continuation,
                                                   **self._scorer_options())
            blocks = self._encode(visuals)
            embeds = self._prompt_embeds([self._user_message(context, len(blocks))], blocks)
            cont_ids = self.processor.tokenize(continuation)
            if cont_ids.numel() == 0:
                raise SampleError(f"empty continuation {continuation!r}")
            self.model.check_length(embeds.shape[1] + cont_ids.numel())
        except SampleError as exc:
            if record:  # a group's other ranks run this sample too; its owner reports it
                self._record_failure(task, doc_id, exc)
            return float("inf"), False
        score = self.model.score_continuation(embeds, cont_ids, chunk_size=self.prefill_chunk_size)
        return score.nll_mean, score.greedy_match

    @settings_checked
    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """Multi-turn: each round's question is appended to the real conversation history."""
        results: list[list[str]] = []
        start = len(self.failures)
        for request in tqdm(requests, disable=self.rank != 0, desc="longva multi-round"):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            answers: list[str] = []
            try:
                blocks = self._encode(self._visuals(doc_to_visual, task, split, doc_id))
            except SampleError as exc:
                self._record_failure(task, doc_id, exc)
                results.append([""])
                continue
            messages = [self._user_message(context, len(blocks))]
            round_info = None
            for round_idx in range(64):  # a task signals the end; 64 rounds is a safety stop
                if round_idx:
                    visuals, context, terminal, _, round_info = doc_to_text(
                        doc, previous_output=answers, round_idx=round_idx, previous_round_info=round_info
                    )
                    if terminal:
                        break
                    messages += [{"role": "assistant", "content": answers[-1]}, {"role": "user", "content": context}]
                try:
                    embeds = self._prompt_embeds(messages, blocks)
                except SampleError as exc:
                    self._record_failure(task, doc_id, exc)
                    break
                answers.append(self._generate(embeds, gen_kwargs or {}))
            results.append(answers or [""])
        self._report_failures("generate_until_multi_round", start)
        return results


class _GenerationBatch:
    """Prompts waiting to be generated together: same generation settings, at most ``size``.
    Results go to ``results[index]`` (``index`` None: a sample another rank of the group owns)."""

    def __init__(self, adapter: LongVA, results: list, size: int):
        self.adapter, self.results, self.size = adapter, results, size
        self.pending: list[tuple[int | None, torch.Tensor]] = []
        self.gen_kwargs = None

    def add(self, index: int | None, embeds: torch.Tensor, gen_kwargs: dict) -> None:
        if self.pending and (gen_kwargs != self.gen_kwargs or len(self.pending) >= self.size):
            self.flush()
        self.gen_kwargs = gen_kwargs
        self.pending.append((index, embeds))

    def flush(self) -> None:
        if not self.pending:
            return
        texts = self.adapter._generate([e for _, e in self.pending], self.gen_kwargs or {})
        for (index, _), text in zip(self.pending, texts):
            if index is not None:
                self.results[index] = text
        self.pending = []


#: The model_args this adapter takes (for the unknown-model_arg check).
MODEL_ARGS = tuple(n for n in inspect.signature(LongVA.__init__).parameters if n not in ("self", "kwargs"))


def checkpoint_identity(pretrained: str, peft: str | None = None) -> str:
    """What answers depend on beyond the model arguments (the ``--use_cache`` key, see
    :mod:`longva_plugins.lmms_eval_plugin.compat`): every file of the checkpoint (and adapter) folder by
    name, size and modification time, and this package's version. A hub id stands for itself."""
    import hashlib
    from pathlib import Path

    from longva_plugins import __version__

    digest = hashlib.sha256(f"longva-plugins={__version__}".encode())
    for root in (pretrained, peft):
        if not root:
            continue
        folder = Path(root)
        if not folder.is_dir():
            digest.update(f"\x1fid={root}".encode())
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"\x1f{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _cpu_attention() -> str:
    """The default attention on CPU: ``longva_causal`` (torch's fused flash op, linear memory, no
    ``(Lq, Lk)`` mask per prefill chunk over a long KV cache, which ``sdpa`` builds)."""
    from longva_plugins.attention import CAUSAL

    return CAUSAL


def _apply_peft(model, adapter_dir: str):
    """Apply a PEFT adapter (and the non-LoRA trainables saved beside it) and merge it."""
    try:
        from longva_plugins.training.peft_utils import load_adapter_into
    except ImportError:
        load_adapter_into = None
    if load_adapter_into is not None:
        return load_adapter_into(model, adapter_dir, merge=True)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


__all__ = ["LongVA"]
