"""Per-sample parity with lmms-eval's own Video-MME and MLVU scoring on tricky responses.

For each response, our task's ``process_results`` must extract the same option letter and give
the same 0/1 score as the built-in task's ``process_results`` (lmms-eval 0.7.3) for the same doc.
"""

from __future__ import annotations

import pytest
from videobench_data import mlvu_row, videomme_row

from longva_plugins.lmms_eval_plugin.task_utils import mlvu, videomme

RESPONSES = [
    "B", "b", "  c  ", "(B)", "B.", "B) Red.", "The correct option is (b).", "The answer is C.",
    "The best answer is: D", "Best option: (A) a bar", "I think A or C", "Either B or D could be right",
    "Green", "Red.", "AB", "A, B and C", "Answer: D", "None of the above", "", "   ", "C\nBecause the car is red.",
    "option D", "(E)", "The answer is E", "I cannot tell from the video.", "A" * 3, "D)", "[C]",
]


@pytest.fixture(autouse=True)
def lmms_eval_extraction(monkeypatch):
    monkeypatch.delenv("LONGVA_ANSWER_EXTRACTION", raising=False)


@pytest.mark.parametrize("answer", ["A", "B", "C", "D"])
def test_videomme_scores_equal_the_builtin_per_sample(answer):
    from lmms_eval.tasks.videomme import utils as builtin

    assert len(RESPONSES) >= 20
    doc = {**videomme_row(0), "answer": answer}
    for response in RESPONSES:
        ours = videomme.videomme_process_results(doc, [response])["longva_videomme_accuracy"]
        theirs = builtin.videomme_process_results(doc, [response])["videomme_perception_score"]
        assert ours["pred_answer"] == theirs["pred_answer"], response
        assert ours["score"] == theirs["score"], response


@pytest.mark.parametrize("answer", ["A", "B", "C", "D"])
def test_mlvu_scores_equal_the_builtin_per_sample(answer, tmp_path, monkeypatch):
    from lmms_eval.tasks.mlvu import utils as builtin

    monkeypatch.setenv("LONGVA_MLVU_ROOT", str(tmp_path))
    doc = mlvu_row(0, answer=answer)
    for response in RESPONSES:
        ours = mlvu.mlvu_process_results(doc, [response])["longva_mlvu_accuracy"]
        theirs = builtin.mlvu_process_results(doc, [response])["mlvu_percetion_score"]
        assert ours["pred_answer"] == theirs["pred_answer"], response
        assert ours["score"] == float(theirs["pred_answer"] == theirs["answer"]), response


TRICKY_QUESTIONS = [
    ("What colour is the car?", ["A. Blue.", "B. Red.", "C. Green.", "D. Yellow."]),
    ("Which of these is\nshown first?", ["A. A cat", "B. A dog  ", "C. 'quoted' text", "D. émoji 🎬"]),
    ("  Leading spaces?", ["A.1", "B.2", "C.3", "D.4"]),
    ("How many people appear in the video? Count carefully.", ["A. 0", "B. 1", "C. 2", "D. More than 2"]),
]


@pytest.mark.parametrize("question,options", TRICKY_QUESTIONS)
@pytest.mark.parametrize("kwargs", [{"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."},
                                    {"pre_prompt": "PRE ", "post_prompt": "The best answer is:"}, {}])
def test_videomme_prompt_is_byte_identical_to_the_builtin(question, options, kwargs):
    from lmms_eval.tasks.videomme import utils as builtin

    doc = {**videomme_row(1), "question": question, "options": options}
    assert videomme.videomme_doc_to_text(doc, kwargs) == builtin.videomme_doc_to_text(doc, kwargs)


@pytest.mark.parametrize("question,options", TRICKY_QUESTIONS)
@pytest.mark.parametrize("kwargs", [None, {"pre_prompt": "", "post_prompt": "\nOnly give the best option.\nBest option: ("}])
def test_mlvu_prompt_is_byte_identical_to_the_builtin(question, options, kwargs):
    from lmms_eval.tasks.mlvu import utils as builtin

    doc = {**mlvu_row(1), "question": question + "\n" + "\n".join(options)}
    assert mlvu.mlvu_doc_to_text(doc, kwargs) == builtin.mlvu_doc_to_text(doc, kwargs)
