"""Stage 1 of LongVA-nano: text needle-in-a-haystack samples and the nano tokenizer's corpus.

A sample is the V-NIAH prompt with text where the frames would be::

    [system + user prefix] [packed filler documents, one colour word planted at a random depth]
    ["\\n" + QUESTION] [<|im_end|>\\n<|im_start|>assistant\\n] [answer <|im_end|>]

Filler documents are runs of common words, packed with ``<|endoftext|>`` between them (the
paper packs SlimPajama documents the same way). The loss is on the answer and its end token only.
"""

from __future__ import annotations

import numpy as np
import torch

from longva_plugins.nano.scenes import COLOURS, QUESTION

FILLER = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program work government number night "
    "point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law "
    "car city community name president team minute idea kid body information back parent face others "
    "level office door health person art war history party result change morning reason research girl "
    "guy moment air teacher force education foot boy age policy process music market sense nation plan "
    "college interest death experience effect use class control care field development role effort rate "
    "heart drug show leader light voice wife police mind price report decision son view relationship town "
    "road arm difference value building action model season society tax director position player record "
    "paper space ground form event official matter center couple site project activity star table need "
    "court oil situation cost industry figure street image phone data picture practice piece land product "
    "doctor wall patient worker news test movie north love support technology step baby computer type "
    "attention film tree source organization hair window evidence population site truth bed garden"
).split()


def corpus() -> str:
    """What the nano tokenizer's BPE learns from: the prompt pieces, every filler and colour word
    with and without a leading space; colour words and the prompt repeated most, so they are
    single tokens."""
    from longva_plugins.vniah.scoring import POST_TEXT, PRE_TEXT

    colours = " " + " ".join(COLOURS) + "\n" + "\n".join(COLOURS)
    filler = " ".join(dict.fromkeys(FILLER))
    return "\n".join([PRE_TEXT + "\n" + QUESTION + POST_TEXT, colours] * 16 + [filler] * 4)


class TextNeedleTask:
    """Token-level text NIAH over a tokenizer; every random choice comes from the generator given."""

    def __init__(self, processor):
        from longva_plugins.vniah.scoring import POST_TEXT, PRE_TEXT

        tok = processor.tokenize
        self.pre = tok(PRE_TEXT).tolist()
        self.post = tok("\n" + QUESTION).tolist() + tok(POST_TEXT).tolist()
        self.filler = [tok(" " + w).tolist() for w in dict.fromkeys(FILLER)]  # words of 1+ tokens
        self.needles = {name: self._one(processor, " " + name) for name in COLOURS}
        self.answers = {name: tok(name).tolist() + [processor.eos_token_id] for name in COLOURS}
        self.separator = processor.pad_token_id
        self.overhead = len(self.pre) + len(self.post) + max(len(a) for a in self.answers.values())

    @staticmethod
    def _one(processor, text: str) -> int:
        ids = processor.tokenize(text).tolist()
        if len(ids) != 1:
            raise ValueError(f"the nano tokenizer splits {text!r} into {len(ids)} tokens; it must be one")
        return ids[0]

    def haystack(self, rng: np.random.Generator, length: int) -> list[int]:
        """``length`` tokens of packed filler documents (5 to 60 words each)."""
        from longva_plugins.training.long_context import pack_documents

        docs, total = [], 0
        while total < length:
            n = int(rng.integers(5, 61))
            doc = [t for i in rng.integers(len(self.filler), size=n) for t in self.filler[i]]
            docs.append(doc)
            total += len(doc) + 1
        return pack_documents(docs, length, self.separator)[0].tolist()

    def sample(self, rng: np.random.Generator, length: int) -> tuple[list[int], list[int], str]:
        """``(input_ids, labels, colour)`` of exactly ``length`` tokens (labels -100 but the answer)."""
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        answer = self.answers[colour]
        body = length - len(self.pre) - len(self.post) - len(answer)
        if body < 2:
            raise ValueError(f"length {length} leaves no room for a haystack (overhead {self.overhead} tokens)")
        hay = self.haystack(rng, body - 1)
        at = int(rng.integers(0, body))
        hay.insert(at, self.needles[colour])
        ids = self.pre + hay + self.post + answer
        labels = [-100] * (len(ids) - len(answer)) + answer
        return ids, labels, colour

    def batch(self, rng: np.random.Generator, batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.sample(rng, length) for _ in range(batch_size)]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


__all__ = ["FILLER", "TextNeedleTask", "corpus"]
