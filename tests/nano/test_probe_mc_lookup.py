"""``examples/nano/probe_mc_lookup.py``: its prompts are the tasks' own and its answers right; it runs."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from longva_plugins.nano.scenes import COLOURS

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "nano" / "probe_mc_lookup.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_mc_lookup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def processor():
    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.nano.build import nano_tokenizer

    return LongVAProcessor(nano_tokenizer())


def _options(prompt: str) -> dict[str, str]:
    """``{letter: option text}`` from any of the three option styles: ``A. x`` lines, MLVU's ``(A) x``
    lines, or the paper prompt's ``str(options)`` (``['A. x', 'B. y', ...]``)."""
    found = {m.group(1) or m.group(2): m.group(3).strip()
             for m in re.finditer(r"^(?:([A-D])\.|\(([A-D])\)) (.+)$", prompt, flags=re.MULTILINE)}
    for line in prompt.splitlines():
        if line.startswith("['"):
            found.update(option.split(". ", 1) for option in ast.literal_eval(line))
    return found


@pytest.mark.parametrize("question", ["lookup", "appear", "fixed"])
def test_probe_prompts_hold_the_right_answer(probe, processor, question):
    from longva_plugins.vniah.scoring import POST_TEXT

    prompts = probe.Prompts(processor, question)
    rng = np.random.default_rng(5)
    seen_formats = set()
    for _ in range(40):
        ids, answer, _ = prompts.sample(rng, 4, 16)
        text = processor.decode(ids, skip_special_tokens=False)
        assert text.endswith(POST_TEXT)
        options = _options(text)
        assert sorted(options) == list("ABCD") and set(options.values()) <= set(COLOURS)
        letter = "ABCD"[answer]
        seen_formats.add("mlvu" if "(A)" in text else "paper" if "['A." in text else "videomme")
        if question == "appear":
            hay = text.split("Which colour")[0]
            planted = {c for c in COLOURS if re.search(rf"\b{c}\b", hay)}
            assert options[letter] in planted and not (set(options.values()) - {options[letter]}) & planted
        else:
            asked = re.search(r"Which option is (\w+)\?", text).group(1)
            if question == "lookup":
                assert options[letter] == asked
            else:  # the fixed control: the letter is a function of the asked colour alone
                assert answer == list(COLOURS).index(asked) % 4
    assert seen_formats == {"mlvu", "paper", "videomme"}
    assert prompts.letters == [processor.tokenize(c).tolist()[0] for c in "ABCD"]


@pytest.mark.parametrize("question", ["kinds", "first", "count", "order"])
def test_probe_kinds_prompts_hold_the_right_answer(probe, processor, question):
    """``--question kinds`` (or one kind alone): each of the mini benchmark's four kinds, its answer
    read off the colour words planted before the prompt (in the order they "appear")."""
    prompts = probe.Prompts(processor, question)
    rng = np.random.default_rng(8)
    kinds = set()
    for _ in range(80):
        ids, answer, (task, kind) = prompts.sample(rng, 4, 16)
        text = processor.decode(ids, skip_special_tokens=False)
        hay, _ = re.split(r"\n(?=(?:Select|Carefully watch|Question:|In which|Which|How many))", text, maxsplit=1)
        planted = [w for w in re.findall(r"\w+", hay.split("<|im_start|>user")[1]) if w in COLOURS]
        assert 1 <= len(planted) <= 4 and len(set(planted)) == len(planted)
        options, letter = _options(text), "ABCD"[answer]
        assert sorted(options) == list("ABCD") and task in ("longva_videomme", "longva_videomme_paper", "longva_mlvu_dev")
        kinds.add(kind)
        if kind == "appear":
            assert options[letter] in planted and not (set(options.values()) - {options[letter]}) & set(planted)
        elif kind == "first":
            assert options[letter] == planted[0]
        elif kind == "count":
            assert options == {"A": "1", "B": "2", "C": "3", "D": "4"} and options[letter] == str(len(planted))
        else:
            a, b = options[letter].split(", then ")
            assert kind == "order" and planted.index(a) < planted.index(b)
    assert kinds == ({"appear", "first", "count", "order"} if question == "kinds" else {question})


def test_probe_prompts_are_the_tasks_doc_to_text(probe, processor):
    """The text after the haystack is exactly a task's ``doc_to_text`` of the question (no template
    of the probe's own), in each of the three formats."""
    from longva_plugins.lmms_eval_plugin.minibench import task_prompt_kwargs
    from longva_plugins.lmms_eval_plugin.task_utils import mlvu, videomme
    from longva_plugins.vniah.scoring import POST_TEXT

    prompts = probe.Prompts(processor, "lookup")
    rng = np.random.default_rng(11)
    matched = set()
    for _ in range(30):
        ids, _, _ = prompts.sample(rng, 4, 16)
        text = processor.decode(ids, skip_special_tokens=False)
        question = re.search(r"Which option is \w+\?", text).group(0)
        options = _options(text)
        candidates = {
            "longva_videomme": videomme.videomme_doc_to_text(
                {"question": question, "options": [f"{k}. {v}" for k, v in sorted(options.items())]},
                task_prompt_kwargs("longva_videomme")),
            "longva_videomme_paper": videomme.videomme_doc_to_text_paper(
                {"question": question, "options": [f"{k}. {v}" for k, v in sorted(options.items())]},
                task_prompt_kwargs("longva_videomme_paper")),
            "longva_mlvu_dev": mlvu.mlvu_doc_to_text(
                {"question": question + "\n" + "\n".join(f"({k}) {v}" for k, v in sorted(options.items()))},
                task_prompt_kwargs("longva_mlvu_dev")),
        }
        hits = [task for task, prompt in candidates.items() if text.endswith("\n" + prompt + POST_TEXT)]
        assert len(hits) >= 1, text
        matched.update(hits)
    assert matched == {"longva_videomme", "longva_videomme_paper", "longva_mlvu_dev"}


@pytest.mark.parametrize("extra", [[], ["--end", "--question", "kinds"]])
def test_probe_runs_and_writes_its_measurement(tmp_path, extra):
    out = tmp_path / "probe.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--steps", "3", "--batch", "4", "--question", "fixed",
                          "--json", str(out)] + extra, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 3 and set(result["loss"]) == {"3"} and result["end"] == bool(extra)
    assert result["question"] == ("kinds" if extra else "fixed")
    assert bool(extra) == any(key.startswith("kind ") for key in result["breakdown"])
    assert 0.0 <= result["accuracy"] <= 1.0 and "letter accuracy" in run.stdout


@pytest.mark.parametrize("n_options", [2, 4])
def test_probe_recall_rows_answer_every_query(probe, processor, n_options):
    """Dense recall: the options in one of the tasks' option formats, then queries each followed by
    the letter of the option naming the asked colour; the targets point at the position before it."""
    prompts = probe.Prompts(processor, "lookup")
    rng = np.random.default_rng(2)
    formats = set()
    for _ in range(30):
        ids, targets = prompts.recall(rng, n_options)
        text = processor.decode(ids, skip_special_tokens=False)
        formats.add("mlvu" if "(A)" in text else "videomme")
        options = {m.group(1) or m.group(2): m.group(3)
                   for m in re.finditer(r"^(?:([A-D])\.|\(([A-D])\)) (\w+)$", text, flags=re.MULTILINE)}
        assert sorted(options) == list("ABCD"[:n_options]) and len(set(options.values())) == n_options
        assert len(targets) == 8
        for at, answer in targets:
            assert ids[at + 1] == prompts.letters[answer]
            asked = re.search(r"Which option is (\w+)\?$", processor.decode(ids[:at + 1], skip_special_tokens=False))
            assert options["ABCD"[answer]] == asked.group(1)
    assert formats == {"mlvu", "videomme"}
    ids, mask, rows, at, answers = prompts.recall_batch(rng, 3, n_options)
    assert rows.tolist() == [0] * 8 + [1] * 8 + [2] * 8 and len(at) == len(answers) == 24
    assert bool((mask[rows, at] == 1).all()) and bool((ids[rows, at + 1] == torch.tensor(prompts.letters)[answers]).all())


def test_probe_recall_phases_breakdown_and_save(tmp_path):
    out, saved = tmp_path / "probe.json", tmp_path / "ckpt"
    run = subprocess.run([sys.executable, str(SCRIPT), "--recall", "2:2,1:4", "--steps", "2", "--batch", "4",
                          "--json", str(out), "--save", str(saved)], capture_output=True, text=True, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["loss"]) == {"recall 2", "recall 3", "2"} and result["recall"] == "2:2,1:4"
    assert {"answer A", "longva_videomme", "longva_mlvu_dev"} <= set(result["breakdown"])
    assert "(2 options)" in run.stdout and "(4 options)" in run.stdout
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor

    assert LongVAProcessor.from_pretrained(saved).tokenizer.pad_token_id is not None
    assert LongVAForCausalLM.from_pretrained(saved).config.num_hidden_layers == 4
