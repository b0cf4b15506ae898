"""Can a language model of the nano's size learn the option lookup multiple choice needs? (on text)

    python examples/nano/probe_mc_lookup.py --question lookup --steps 1200
    python examples/nano/probe_mc_lookup.py --question fixed --steps 400        # the positive control
    python examples/nano/probe_mc_lookup.py --scratch 8,256,8 --lr 5e-4 ...     # a larger model, untrained

Stage 3 of the recipe (``recipe.py --mc``) does not lift LongVA-nano above chance on the mini
benchmark. This probe isolates the step it fails at, with no video: text prompts in the exact formats
of ``longva_videomme``, ``longva_videomme_paper`` and ``longva_mlvu_dev`` (the tasks' own
``doc_to_text``), after a few of stage 1's filler words with one or two colour words planted among them, the
answer a letter, loss on the letter only. Questions (``--question``):

- ``lookup``: "Which option is <colour>?" -- the letter of the option that names the colour the
  question names: the content-addressed copy every multiple-choice answer needs, nothing to see.
- ``appear``: "Which colour of framed square appears in the video?" (the mini benchmark's
  ``appear`` kind; the colour word planted in the filler is the one that "appears").
- ``first``, ``count``, ``order``: the mini benchmark's other kinds, alone (two to four planted
  colour words for ``first`` / ``order``, one to four for ``count``, in the order they "appear").
- ``kinds``: all four, one at random of those the planted colour words (one to four) support.
- ``fixed``: the ``lookup`` prompt, but the answer is a fixed function of the question's colour
  (no lookup): a positive control showing the set-up learns what a small model can learn.

``--recall STEPS:OPTIONS,...`` first trains dense option recall (the options alone in a task's
format, then eight "Which option is <colour>? <letter>" queries, loss on every letter), in phases
of a number of options.

It trains the checkpoint's language model (or, with ``--scratch LAYERS,WIDTH,HEADS``, an untrained
one of that shape with the nano tokenizer), then reports the loss every 100 steps and the letter
accuracy on 96 unseen prompts, by task format and by answer letter. ``--json`` writes the
measurement; ``--save DIR`` the trained checkpoint (the source's other files with it), which
``--checkpoint DIR --seed 1`` continues on new prompts. Measured numbers are in docs/research/multiple-choice-probes.md
("Multiple choice: not yet").
"""

from __future__ import annotations

import argparse
import json
import string
import time

import numpy as np
import torch

from longva_plugins.lmms_eval_plugin.minibench import KINDS

LETTERS = string.ascii_uppercase[:4]
#: Colour words planted for each ``--question`` (fewest, most): as many as the kind can be asked of.
EVENTS = {"lookup": (1, 2), "fixed": (1, 2), "appear": (1, 2), "first": (2, 4), "count": (1, 4), "order": (2, 4),
          "kinds": (1, 4)}
assert set(EVENTS) == {"lookup", "fixed", "kinds", *KINDS}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="LongVA checkpoint (default: the shipped LongVA-nano)")
    parser.add_argument("--question", choices=tuple(EVENTS), default="lookup")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--haystack", default="4:16", help="filler words before the prompt, MIN:MAX")
    parser.add_argument("--scratch", help="LAYERS,WIDTH,HEADS: an untrained language model of that shape")
    parser.add_argument("--recall", default="", metavar="STEPS:OPTIONS,...",
                        help="first train dense option recall, in phases of STEPS steps with OPTIONS options (in a "
                             "task's option format, then eight 'Which option is <colour>? <letter>' queries, loss on "
                             "every letter), e.g. 300:2,300:4")
    parser.add_argument("--end", action="store_true",
                        help="also train the end token after the letter (the answer format lmms-eval generates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the losses and the accuracy here")
    parser.add_argument("--save", help="save the trained checkpoint here (to continue with --checkpoint)")
    return parser.parse_args()


class Prompts:
    """Letter-answer prompts of one question kind, every random choice from the generator given."""

    def __init__(self, processor, question: str):
        from longva_plugins.lmms_eval_plugin.minibench import TEXT_FORMATS, doc_to_text_functions, task_prompt_kwargs
        from longva_plugins.nano.text import TextNeedleTask
        from longva_plugins.vniah.scoring import POST_TEXT, PRE_TEXT

        self.tok = lambda text: processor.tokenize(text).tolist()
        self.question = question
        self.text_of = doc_to_text_functions()
        self.kwargs = {task: task_prompt_kwargs(task) for task in TEXT_FORMATS}
        self.pre, self.post = self.tok(PRE_TEXT), self.tok(POST_TEXT)
        self.letters = [TextNeedleTask._one(processor, letter) for letter in LETTERS]
        self.pad = processor.pad_token_id
        self.end = TextNeedleTask._one(processor, "<|im_end|>")

    def _question(self, rng, events: list[str]):
        from longva_plugins.lmms_eval_plugin.minibench import Question, VideoPlan, questions_for
        from longva_plugins.nano.scenes import COLOURS

        if self.question not in ("lookup", "fixed"):
            candidates = questions_for(rng, VideoPlan([(1, c) for c in events]))
            if self.question == "kinds":
                return candidates[int(rng.integers(len(candidates)))]
            return next(q for q in candidates if q.kind == self.question)
        options = [str(c) for c in rng.permutation(list(COLOURS))[:4]]
        asked = int(rng.integers(4))
        answer = asked if self.question == "lookup" else list(COLOURS).index(options[asked]) % 4
        return Question(self.question, f"Which option is {options[asked]}?", options, answer)

    def sample(self, rng, low: int, high: int) -> tuple[list[int], int, tuple[str, str]]:
        """One prompt after ``low``..``high`` filler words with colour words planted between them (as
        many as :data:`EVENTS` gives the question): ``(ids, answer
        index, (the task whose format it is in, question kind))``."""
        from longva_plugins.lmms_eval_plugin.minibench import TEXT_FORMATS, question_doc
        from longva_plugins.nano.scenes import COLOURS
        from longva_plugins.nano.text import FILLER

        fewest, most = EVENTS[self.question]
        events = [str(c) for c in rng.permutation(list(COLOURS))[:int(rng.integers(fewest, most + 1))]]
        q = self._question(rng, events)
        words = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(low, high + 1)))]
        for k, at in enumerate(sorted(rng.choice(len(words) + 1, size=len(events), replace=False).tolist())):
            words.insert(at + k, events[k])
        hay = self.tok(" " + " ".join(words))
        task = TEXT_FORMATS[int(rng.integers(len(TEXT_FORMATS)))]
        ids = self.pre + hay + self.tok("\n" + self.text_of[task](question_doc(task, q), self.kwargs[task])) + self.post
        return ids, q.answer, (task, q.kind)

    def recall(self, rng, n_options: int = 4, queries: int = 8) -> tuple[list[int], list[tuple[int, int]]]:
        """Dense option recall: ``n_options`` options in one task's option format, then ``queries`` questions
        each followed by its letter; returns the ids and ``(position predicting the letter, answer)``."""
        from longva_plugins.lmms_eval_plugin.minibench import TEXT_FORMATS, Question, question_doc
        from longva_plugins.nano.scenes import COLOURS

        options = [str(c) for c in rng.permutation(list(COLOURS))[:n_options]]
        task = TEXT_FORMATS[int(rng.integers(len(TEXT_FORMATS)))]
        doc = question_doc(task, Question("recall", "", options, 0))
        lines = doc["question"].strip() if task == "longva_mlvu_dev" else "\n".join(doc["options"])
        ids, targets = self.pre + self.tok(lines), []
        for asked in rng.integers(n_options, size=queries).tolist():
            ids += self.tok(f"\nWhich option is {options[asked]}?")
            targets.append((len(ids) - 1, asked))
            ids.append(self.letters[asked])
        return ids, targets

    def recall_batch(self, rng, size: int, n_options: int = 4):
        """Right-padded recall rows: ``(input_ids, attention_mask, row index, position, answer)``."""
        rows = [self.recall(rng, n_options) for _ in range(size)]
        ids, mask = self._padded([row for row, _ in rows], left=False)
        where = [(i, at, answer) for i, (_, targets) in enumerate(rows) for at, answer in targets]
        return ids, mask, *(torch.tensor(column) for column in zip(*where))

    def batch(self, rng, size: int, low: int, high: int):
        """Left-padded ``(input_ids, attention_mask, position_ids, answer index, (task format, kind) of
        each row)``: the answer is read at the last position of every row."""
        rows = [self.sample(rng, low, high) for _ in range(size)]
        ids, mask = self._padded([row for row, _, _ in rows], left=True)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        return ids, mask, positions, torch.tensor([answer for _, answer, _ in rows]), [task for _, _, task in rows]

    def _padded(self, rows: list[list[int]], left: bool):
        """``(input_ids, attention_mask)`` of ``rows`` padded to the longest, on the left or the right."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if left else slice(0, len(row))
            ids[i, span] = torch.tensor(row)
            mask[i, span] = 1
        return ids, mask


def letter_logits(model, prompts: Prompts, ids, mask, positions):
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1]
    return logits[:, prompts.letters]


def answer_losses(model, prompts: Prompts, ids, mask, positions, answers, end: bool):
    """``(letter loss, None)``; with ``end``, the right letter appended and ``(its loss, the end
    token's loss after it)`` -- the answer format lmms-eval generates."""
    if not end:
        return torch.nn.functional.cross_entropy(letter_logits(model, prompts, ids, mask, positions), answers), None
    letters = torch.tensor(prompts.letters)[answers][:, None]
    logits = model(input_ids=torch.cat([ids, letters], 1), attention_mask=torch.cat([mask, mask[:, -1:]], 1),
                   position_ids=torch.cat([positions, positions[:, -1:] + 1], 1)).logits
    return (torch.nn.functional.cross_entropy(logits[:, -2, prompts.letters], answers),
            torch.nn.functional.cross_entropy(logits[:, -1], torch.full_like(answers, prompts.end)))


def main():
    args = parse_args()
    from longva_plugins.fileio import atomic_write_text
    from longva_plugins.models.longva import (
        LongVAForCausalLM,
        LongVAProcessor,
        nano_checkpoint,
    )

    checkpoint = args.checkpoint or str(nano_checkpoint())
    torch.manual_seed(args.seed)
    model = LongVAForCausalLM.from_pretrained(checkpoint, attn_implementation="sdpa", torch_dtype=torch.float32)
    if args.scratch:
        layers, width, heads = (int(x) for x in args.scratch.split(","))
        config = model.config
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = layers, width, 2 * width
        config.num_attention_heads, config.num_key_value_heads = heads, max(1, heads // 2)
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:1] * layers
        model = LongVAForCausalLM(config)
    processor = LongVAProcessor.from_pretrained(checkpoint)
    prompts = Prompts(processor, args.question)
    low, high = (int(x) for x in args.haystack.split(":"))
    for name, param in model.named_parameters():
        param.requires_grad = "vision_tower" not in name and "mm_projector" not in name
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"probe: {args.question}, language model {sum(p.numel() for p in params):,} parameters, "
          f"{args.steps} steps of {args.batch}, lr {args.lr}", flush=True)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    start, losses, curve = time.time(), [], {}
    model.train()

    def optimise(step: int, loss: torch.Tensor, extra: torch.Tensor | None = None) -> None:
        """One AdamW step on ``loss`` (+ ``extra``, not logged; 100 warm-up steps, gradients clipped to
        norm 1) and the value of ``loss`` logged."""
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100)
        (loss if extra is None else loss + extra).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())

    phases = [tuple(int(x) for x in phase.split(":")) for phase in args.recall.split(",") if phase]
    schedule = [n_options for steps, n_options in phases for _ in range(steps)]
    for step, n_options in enumerate(schedule):
        ids, mask, rows, at, answers = prompts.recall_batch(np.random.default_rng([args.seed, 7, step]), args.batch,
                                                            n_options)
        logits = model(input_ids=ids, attention_mask=mask).logits[rows, at][:, prompts.letters]
        optimise(step, torch.nn.functional.cross_entropy(logits, answers))
        if (step + 1) % 100 == 0 or step + 1 == len(schedule) or schedule[step + 1] != n_options:
            curve[f"recall {step + 1}"] = float(np.mean(losses[-100:]))
            print(f"recall step {step + 1} ({n_options} options): letter loss {curve[f'recall {step + 1}']:.3f} "
                  f"(chance ln {n_options} = {np.log(n_options):.3f}; {time.time() - start:.0f} s)", flush=True)
    losses.clear()
    for step in range(args.steps):
        ids, mask, positions, answers, _ = prompts.batch(np.random.default_rng([args.seed, step]), args.batch, low, high)
        optimise(step, *answer_losses(model, prompts, ids, mask, positions, answers, args.end))
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            curve[step + 1] = float(np.mean(losses[-100:]))
            print(f"step {step + 1}: letter loss {curve[step + 1]:.3f} (chance ln 4 = 1.386; {time.time() - start:.0f} s)",
                  flush=True)
    model.eval()
    hits, total, by = 0, 0, {}
    with torch.no_grad():
        rng = np.random.default_rng([args.seed, 99991])
        for _ in range(3):
            ids, mask, positions, answers, tasks = prompts.batch(rng, 32, low, high)
            right = (letter_logits(model, prompts, ids, mask, positions).argmax(-1) == answers).tolist()
            hits, total = hits + sum(right), total + len(right)
            for hit, answer, (task, kind) in zip(right, answers.tolist(), tasks):
                for key in (task, f"answer {LETTERS[answer]}") + ((f"kind {kind}",) if args.question == "kinds" else ()):
                    by.setdefault(key, []).append(hit)
    breakdown = {key: round(float(np.mean(v)), 3) for key, v in sorted(by.items())}
    print("probe: accuracy by format and answer: " + ", ".join(f"{k} {v:.2f}" for k, v in breakdown.items()))
    result = {"question": args.question, "checkpoint": checkpoint, "scratch": args.scratch, "steps": args.steps,
              "batch": args.batch, "lr": args.lr, "recall": args.recall, "end": args.end, "haystack": args.haystack, "loss": curve,
              "accuracy": hits / total, "breakdown": breakdown, "seconds": round(time.time() - start, 1)}
    print(f"probe: {args.question} letter accuracy {hits / total:.2f} on {total} unseen prompts (chance 0.25)")
    if args.save:
        from longva_plugins.nano.build import save_checkpoint

        save_checkpoint(model, checkpoint, args.save)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
