"""Test-only tasks for the `longva` adapter; media paths are relative to this folder."""

import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def e2e_doc_to_visual(doc):
    if doc.get("image"):
        return [Image.open(os.path.join(HERE, doc["image"])).convert("RGB")]
    return [os.path.join(HERE, doc["video"])]


def e2e_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def e2e_doc_to_continuation(doc):
    return " " + doc["answer"]


def e2e_process_generation(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"].lower())}


def e2e_process_loglik(doc, results):
    nll, is_greedy = results[0]
    return {"nll": float(nll), "acc": float(is_greedy)}
