"""The lmms-eval adapter in-process: context limits, multi-round history, model_args handling."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")
from lmms_eval.api.instance import Instance  # noqa: E402

from longva_plugins.lmms_eval_plugin.adapter import LongVA  # noqa: E402
from longva_plugins.errors import SettingError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_media import write_video  # noqa: E402


@pytest.fixture(scope="module")
def adapter():
    from longva_plugins.testing import ensure_tiny_checkpoint

    lm = LongVA(pretrained=str(ensure_tiny_checkpoint()), max_frames_num=2, device="cpu", truncation=True)
    lm.task_dict = {"t": {"test": {0: {"q": "x"}, 1: {"q": "y"}}}}
    return lm


def _request(kind, args):
    return Instance(request_type=kind, arguments=args, idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1})


def test_wrong_template_is_refused():
    from longva_plugins.testing import ensure_tiny_checkpoint

    with pytest.raises(SettingError, match="qwen_1_5"):
        LongVA(pretrained=str(ensure_tiny_checkpoint()), conv_template="vicuna_v1", device="cpu")


def test_too_many_frames_is_a_recorded_failure_not_a_crash(adapter, tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=4)
    limit = adapter.model.config.max_position_embeddings
    adapter.max_frames_num = limit // adapter.model.config.tokens_per_frame + 1
    try:
        start = len(adapter.failures)
        out = adapter.generate_until([_request("generate_until", ("describe", {"max_new_tokens": 2}, lambda d: [str(video)], 0, "t", "test"))])
    finally:
        adapter.max_frames_num = 2
    assert out == [""]
    assert "max_frames_num" in adapter.failures[start][2] and "ContextLengthError" in adapter.failures[start][2]


def test_stop_strings_are_applied(adapter):
    reqs = [_request("generate_until", ("say something", {"max_new_tokens": 6, "until": ["\n"]}, None, 0, "t", "test"))]
    (text,) = adapter.generate_until(reqs)
    assert "\n" not in text


def test_multi_round_keeps_the_conversation(adapter, monkeypatch):
    prompts = []
    real = adapter._prompt_embeds

    def spy(messages, blocks):
        prompts.append([dict(m) for m in messages])
        return real(messages, blocks)

    monkeypatch.setattr(adapter, "_prompt_embeds", spy)

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        if round_idx >= 3:
            return None, None, True, previous_output, None
        return None, f"question {round_idx}", False, previous_output, {"r": round_idx}

    (answers,) = adapter.generate_until_multi_round(
        [_request("generate_until_multi_round", ("question 0", {"max_new_tokens": 3}, None, doc_to_text, 0, "t", "test"))]
    )
    assert len(answers) == 3
    assert [m["role"] for m in prompts[-1]] == ["user", "assistant", "user", "assistant", "user"]
    assert prompts[-1][1]["content"] == answers[0] and prompts[-1][4]["content"] == "question 2"


def test_loglikelihood_returns_positive_nll_and_greedy_flag(adapter):
    reqs = [_request("loglikelihood", ("pick one", " A", None, 0, "t", "test"))]
    ((nll, greedy),) = adapter.loglikelihood(reqs)
    assert nll > 0 and isinstance(greedy, bool)


def test_batched_generation_matches_one_at_a_time(adapter):
    reqs = [_request("generate_until", (q, {"max_new_tokens": 4}, None, 0, "t", "test"))
            for q in ("a short one", "a somewhat longer question here", "x")]
    adapter.batch_size_per_gpu = 1
    single = adapter.generate_until(reqs)
    adapter.batch_size_per_gpu = 3
    try:
        batched = adapter.generate_until(reqs)
    finally:
        adapter.batch_size_per_gpu = 1
    assert batched == single


def test_the_checkpoint_declares_its_evaluation_defaults(monkeypatch):
    """The shipped nano says it reads the `nano` needles: with LONGVA_VNIAH_NEEDLES unset the V-NIAH
    task uses them; a user's setting still wins; a checkpoint without defaults changes nothing."""
    from longva_plugins.lmms_eval_plugin.adapter import LongVA
    from longva_plugins.testing import ensure_tiny_checkpoint
    from longva_plugins.nano.checkpoint import nano_checkpoint
    from longva_plugins.vniah.grid import env_settings

    monkeypatch.delenv("LONGVA_VNIAH_NEEDLES", raising=False)
    LongVA(pretrained=str(nano_checkpoint()), device="cpu")
    assert env_settings()["needles"] == "nano"
    monkeypatch.setenv("LONGVA_VNIAH_NEEDLES", "synthetic")
    assert env_settings()["needles"] == "synthetic"
    monkeypatch.delenv("LONGVA_VNIAH_NEEDLES")
    LongVA(pretrained=str(ensure_tiny_checkpoint()), device="cpu")
    assert env_settings()["needles"] == "synthetic"
