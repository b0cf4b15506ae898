"""LongVA-nano stage 0: pretrain the tiny CLIP-style tower on its own procedural data.

    python examples/nano/stage0_tower.py --checkpoint IN --out OUT --steps 600

LongVA's tower is a pretrained CLIP that already sees objects; a random-init tiny tower does not,
and learning to see *through* the frozen language model is too weak a signal on 2 CPU cores. So,
like CLIP before LLaVA, the tower first learns on its own: single 336 px scenes (no language
model, no video), and a linear probe on its pooled 4 x 4 features names, for each cell, the colour
of the framed square that cell holds, or "none" (:func:`~longva_plugins.nano.scenes.cell_labels`).
The probe is thrown away; ``OUT`` is ``IN`` with the trained tower.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak of a one-cycle schedule")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.nano.build import save_checkpoint
    from longva_plugins.nano.scenes import COLOURS, TILE, cell_labels, compose

    torch.manual_seed(args.seed)
    model = LongVAForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    processor = LongVAProcessor.from_pretrained(args.checkpoint)
    tower = model.vision_tower
    grid = model.config.vision_grid
    pooled = -(-grid // model.config.mm_spatial_pool_stride)
    probe = torch.nn.Linear(model.config.mm_hidden_size, 1 + len(COLOURS))
    params = list(tower.parameters()) + list(probe.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=max(args.steps, 1),
                                                   pct_start=0.1)
    start, losses, accs = time.time(), [], []
    for step in range(args.steps):
        rng = np.random.default_rng([args.seed, 17, step])
        images, labels = [], []
        for _ in range(args.batch):
            level = float(rng.uniform(0.3, 1.0))
            image, colour, box = compose(rng, level, canvas=(TILE, TILE), with_object=rng.random() < 0.75)
            images.append(image)
            labels.append(cell_labels(box, colour, grid=pooled))
        pixels = processor.preprocess_frames(images, mode="pad")
        feats = tower(pixels)  # (B, P, C)
        b, p, c = feats.shape
        cells = F.avg_pool2d(feats.transpose(1, 2).reshape(b, c, grid, grid), model.config.mm_spatial_pool_stride)
        logits = probe(cells.flatten(2).transpose(1, 2))  # (B, cells, classes)
        target = torch.from_numpy(np.stack(labels))
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        hit = (logits.argmax(-1) == target)
        accs.append(hit[target > 0].float().mean().item() if (target > 0).any() else 1.0)
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(f"[stage0] step {step + 1}/{args.steps} loss {np.mean(losses[-50:]):.4f} "
                  f"square-cell accuracy {np.mean(accs[-50:]):.2f} ({time.time() - start:.0f} s)", flush=True)
    save_checkpoint(model, args.checkpoint, args.out)
    print(f"[stage0] saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
