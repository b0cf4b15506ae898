"""Every extension point of longva-plugins, in one place.

Third-party packages implement these hooks in a module or object and announce it through the
``longva_plugins`` entry-point group::

    [project.entry-points.longva_plugins]
    my_plugin = "my_package.longva_hooks"

The default behaviour of the package is itself a set of ordinary plugins registered first (see
:mod:`longva_plugins.plugins`). pluggy calls implementations last-registered-first, so a
third-party implementation of a ``firstresult`` hook is consulted before the built-in one and
wins by returning something other than ``None``.

Kinds of hooks:

- ``firstresult`` — "one decides" (which video decoder reads a file, which attention kernel runs).
- plain — "many contribute" (task folders, needle sets, LoRA targets, trainer callbacks); the
  caller receives a list with one entry per implementation.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pluggy

if TYPE_CHECKING:  # typed like pytest's hookspecs; nothing heavy is imported at run time
    import torch
    from transformers import PreTrainedModel, TrainerCallback, TrainingArguments

    from longva_plugins.attention.block import AttentionKernel
    from longva_plugins.video import VideoFrames
    from longva_plugins.vniah.haystack import Haystack
    from longva_plugins.vniah.needles import Needle

PROJECT_NAME = "longva_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------- lmms-eval wiring
@hookspec
def longva_task_folders() -> Iterable[str | os.PathLike] | None:
    """Contribute lmms-eval task folders.

    Each folder is indexed by lmms-eval's ``TaskManager`` exactly like ``--include_path``: every
    ``*.yaml`` with a ``task:`` key becomes a task. Folders are appended after lmms-eval's built-in
    tasks and after the user's ``--include_path``, which therefore win on name clashes.

    :return: an iterable of paths (``str`` or ``os.PathLike``) to existing directories, or
        ``None``.
    """


# --------------------------------------------------------------------------- video decoding
@hookspec(firstresult=True)
def longva_read_video(path: str, num_frames: int | None, max_fps: float | None, backend: str | None,
                      indices: Sequence[int] | None) -> VideoFrames | None:
    """Decode frames from a video file; stops at the first non-None result.

    :param path: the video file (``str``).
    :param num_frames: how many frames to sample uniformly (``int``), or ``None`` to take every
        frame allowed by ``max_fps``.
    :param max_fps: sample at most this many frames per second of video (``float``) or ``None``.
    :param indices: explicit frame indices to return, in order (``list[int]``, numbered as a full
        sequential decode numbers frames), or ``None`` to sample with ``num_frames`` / ``max_fps``.
        A backend that cannot honour them must return ``None``.
    :param backend: the backend the user asked for (``"decord"``, ``"pyav"``, ``"torchcodec"``,
        a third-party name) or ``None`` for "any". An implementation that is not the requested
        backend, or that is not installed, returns ``None``.
    :return: a :class:`longva_plugins.video.VideoFrames` or ``None``. Decoding errors are
        raised as :class:`longva_plugins.video.VideoDecodeError` naming the file.
    """


@hookspec
def longva_video_backends() -> Mapping[str, bool] | None:
    """Announce video decoding backends for ``longva-plugins doctor`` and error messages.

    :return: a mapping ``{backend_name: available (bool)}`` or ``None``.
    """


# --------------------------------------------------------------------------- V-NIAH
@hookspec
def longva_needle_sets() -> Mapping[str, Callable[[], list[Needle]]] | None:
    """Contribute V-NIAH needle sets.

    :return: a mapping ``{name: factory}`` where ``factory()`` returns a list of
        :class:`longva_plugins.vniah.needles.Needle` (image, question, answer), or ``None``.
    """


@hookspec
def longva_distractor_sets() -> Mapping[str, Callable[[], list[Needle]]] | None:
    """Contribute V-NIAH-D distractor sets (``vniah_d``, ``LONGVA_VNIAH_DISTRACTORS``).

    A distractor set pairs with a needle set by position: distractor ``i`` is inserted with needle
    ``i``, so it must have as many entries. A distractor looks like its needle (the same kind of
    object, in the same style) but does not answer the needle's question -- or answers it
    differently: its ``answer`` is what a model that took it for the needle would say (recorded as
    "distracted"); its ``question`` is not asked.

    :return: a mapping ``{name: factory}`` where ``factory()`` returns a list of
        :class:`longva_plugins.vniah.needles.Needle`, or ``None``.
    """


@hookspec
def longva_haystacks() -> Mapping[str, Callable[[], Haystack]] | None:
    """Contribute named V-NIAH haystacks.

    :return: a mapping ``{name: factory}`` where ``factory()`` returns a
        :class:`longva_plugins.vniah.haystack.Haystack` (1-FPS frames on demand), or ``None``.
    """


# --------------------------------------------------------------------------- attention
@hookspec(firstresult=True)
def longva_attention_kernel(name: str, device: torch.device, dtype: torch.dtype | None) -> AttentionKernel | None:
    """Choose the block-attention kernel used by the ring attention functions; stops at the first
    non-None result.

    :param name: the kernel asked for: ``"auto"`` (flash-attn on CUDA for float16/bfloat16 inputs
        when installed; torch's fused flash op on CPU, with its log-sum-exp; the tiled torch kernel
        elsewhere), ``"fused"`` (the CPU op, tiled where it does not apply), ``"torch"`` (the tiled
        kernel, any device and dtype) or ``"flash_attn"``; plugins may add names.
    :param device: the ``torch.device`` the tensors live on.
    :param dtype: the ``torch.dtype`` of the query tensor.
    :return: a :class:`longva_plugins.attention.block.AttentionKernel` (``forward`` and
        ``backward`` with the interface of ``block_attention`` / ``block_attention_backward``), or
        ``None`` to let another implementation decide.
    """


# --------------------------------------------------------------------------- training
@hookspec
def longva_lora_target_modules(model: PreTrainedModel, stage: str) -> list[str] | None:
    """Contribute LoRA target module names (PEFT's ``target_modules`` meaning).

    :param model: the model about to be wrapped by PEFT.
    :param stage: the training stage name (``"lora"``, ...).
    :return: a list of module-name patterns, or ``None``. All contributions are merged.
    """


@hookspec
def longva_trainer_callbacks(trainer_args: TrainingArguments, stage: str) -> list[TrainerCallback] | None:
    """Contribute ``transformers.TrainerCallback`` objects.

    :param trainer_args: the ``transformers.TrainingArguments`` in use.
    :param stage: the training stage name.
    :return: a list of callbacks, or ``None``.
    """


@hookspec(firstresult=True)
def longva_wrap_model(model: PreTrainedModel, stage: str) -> Any:
    """Wrap or replace the model before training; stops at the first non-None result.

    :param model: the model (possibly already a PEFT model).
    :param stage: the training stage name.
    :return: the model to train, or ``None`` to keep it unchanged.
    """
