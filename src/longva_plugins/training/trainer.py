"""LLaVA's trainer design on ``transformers.Trainer``, for LongVA.

What it adds to ``Trainer`` (LLaVA-NeXT ``llava_trainer.py``): separate learning rates for the
projector and the vision tower, a modality-length-grouped sampler (batches of one modality,
similar lengths) and stage-aware saving (the projector stage saves only the projector). The loss
is the model's own: batches are the inputs of its standard forward (``model(**batch)``: pixels and
placeholder ids, see :mod:`.data`), so DDP, FSDP and DeepSpeed wrap the whole step.
"""

from __future__ import annotations

import os
import random

from torch.utils.data import BatchSampler, Sampler
from transformers import Trainer


class ModalityLengthGroupedSampler(Sampler[int]):
    """Shuffle within each modality, sort mega-batches by length, never mix modalities in a batch."""

    def __init__(self, modality_lengths: list[tuple[str, int]], batch_size: int, seed: int = 0):
        self.items = modality_lengths
        self.batch_size = max(batch_size, 1)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The Trainer sets it before each epoch (also when resuming: the same order again)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        batches = []
        for modality in sorted({m for m, _ in self.items}):
            indices = [i for i, (m, _) in enumerate(self.items) if m == modality]
            rng.shuffle(indices)
            mega = self.batch_size * 8
            for start in range(0, len(indices), mega):
                chunk = sorted(indices[start : start + mega], key=lambda i: -self.items[i][1])
                batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter([i for batch in batches for i in batch])


class _EpochBatchSampler(BatchSampler):
    """A ``BatchSampler`` that passes the Trainer's ``set_epoch`` on to its sampler (the Trainer calls
    it on the sampler under accelerate's ``BatchSamplerShard``)."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class LongVATrainer(Trainer):
    """``transformers.Trainer`` with LongVA's multimodal batches and LLaVA's training knobs.

    Args (beyond ``Trainer``'s):
        longva_config: a :class:`~longva_plugins.training.config.LongVATrainingConfig`.
    """

    def __init__(self, *args, longva_config=None, sequence_parallel_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.longva_config = longva_config
        self.sequence_parallel_group = sequence_parallel_group
        if sequence_parallel_group is not None:
            # compute_loss normalises each micro-batch itself; the Trainer divides by the accumulation steps
            self.loss_is_scaled_for_ga = False

    # ------------------------------------------------------------------ sequence parallelism
    @property
    def sequence_parallel_size(self) -> int:
        from longva_plugins.distributed import group_size

        return group_size(self.sequence_parallel_group) if self.sequence_parallel_group is not None else 1

    def get_train_dataloader(self):
        """Under ``sequence_parallel: S``: every rank of a group gets the same batches, each group (a
        data-parallel replica) every ``world/S``-th batch of the sampler's order (the order one
        process would see; accelerate's ``BatchSamplerShard``, so every replica runs as many steps);
        otherwise the Trainer's own loader."""
        if self.sequence_parallel_size == 1:
            return super().get_train_dataloader()
        from accelerate.data_loader import BatchSamplerShard
        from torch.utils.data import DataLoader

        batches = _EpochBatchSampler(self._get_train_sampler(), self._train_batch_size,
                                     drop_last=self.args.dataloader_drop_last)
        # accelerate's sharding of whole batches over the replicas (each as many, wrapping round)
        shard = BatchSamplerShard(batches, num_processes=self.args.world_size // self.sequence_parallel_size,
                                  process_index=self.args.process_index // self.sequence_parallel_size)
        return DataLoader(self.train_dataset, batch_sampler=shard, collate_fn=self.data_collator,
                          num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Under ``sequence_parallel: S``: the visuals are encoded on every rank of the group and put
        in place (the whole sample's ``inputs_embeds``), then each rank runs the language model on
        its zigzag shard with the ring attention kernels; the loss is this rank's share of the
        sample's mean, times S (DDP averages gradients over all ranks: the group's sum is wanted)."""
        if self.sequence_parallel_size == 1:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        from longva_plugins.training.long_context import sequence_parallel_loss

        from longva_plugins.training.peft_utils import base_model

        core = base_model(model.module if hasattr(model, "module") else model)  # under DDP and PEFT
        visual = {k: inputs[k] for k in ("pixel_values", "image_grids", "pixel_values_videos", "video_grids") if k in inputs}
        embeds, labels = core.embed_inputs(inputs["input_ids"], labels=inputs["labels"], **visual)
        loss, _ = sequence_parallel_loss(model, group=self.sequence_parallel_group, labels=labels, inputs_embeds=embeds)
        loss = loss * self.sequence_parallel_size
        return (loss, None) if return_outputs else loss

    def _get_train_sampler(self, *args, **kwargs):
        dataset = self.train_dataset
        if self.longva_config is not None and self.longva_config.group_by_modality_length and hasattr(dataset, "modality_lengths"):
            return ModalityLengthGroupedSampler(dataset.modality_lengths(), self.args.train_batch_size, self.args.seed)
        return super()._get_train_sampler(*args, **kwargs)

    def create_optimizer(self, model=None):
        """The optimizer ``TrainingArguments.optim`` names, with LLaVA's parameter groups: the
        projector and the vision tower at their own learning rates, no weight decay on biases and
        norms."""
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        cfg = self.longva_config
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[float, float], list] = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            lr = self.args.learning_rate
            if cfg is not None and "mm_projector" in name and cfg.mm_projector_lr:
                lr = cfg.mm_projector_lr
            elif cfg is not None and "vision_tower" in name and cfg.mm_vision_tower_lr:
                lr = cfg.mm_vision_tower_lr
            weight_decay = self.args.weight_decay if name in decay else 0.0
            groups.setdefault((lr, weight_decay), []).append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(
            [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()],
            lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def _save(self, output_dir=None, state_dict=None):
        cfg = self.longva_config
        if cfg is not None and cfg.stage == "projector":
            from safetensors.torch import save_file

            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            state = self.model.state_dict()
            projector = {k: v.detach().cpu().contiguous() for k, v in state.items() if "mm_projector" in k}
            save_file(projector, os.path.join(output_dir, "mm_projector.safetensors"))
            if cfg.tune_vision_tower:  # LLaVA's mm_tunable_parts="mm_vision_tower,mm_mlp_adapter"
                tower = {k: v.detach().cpu().contiguous() for k, v in state.items() if "vision_tower" in k}
                save_file(tower, os.path.join(output_dir, "vision_tower.safetensors"))
            return
        super()._save(output_dir, state_dict)


__all__ = ["LongVATrainer", "ModalityLengthGroupedSampler"]
