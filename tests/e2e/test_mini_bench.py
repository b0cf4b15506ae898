"""The mini benchmark through `lmms-eval --model longva`: its layouts load in every task, and the
prompt each sample is given is the one the alignment stage trains on, byte for byte."""

from __future__ import annotations

import pytest
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval

pytestmark = pytest.mark.slow


def test_mini_bench_runs_in_every_task_with_the_training_prompts(tiny_checkpoint, tmp_path):
    from longva_plugins.lmms_eval_plugin.minibench import TASKS, bench_env, bench_scores, make_mini_bench, task_prompts

    bench = tmp_path / "bench"
    make_mini_bench(bench, videos_per_duration=1, seed=4242, durations={"short": 8, "medium": 12, "long": 16})
    out = tmp_path / "out"
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint},max_frames_num=16,max_fps=4",
                   "--tasks", ",".join(TASKS), "--output_path", str(out), "--log_samples"], cwd=tmp_path,
                  env=offline_env(**bench_env(bench)), timeout=900)
    results = read_results(out)["results"]
    scores = bench_scores(out)
    prompts: dict[str, set] = {}
    for task, _, _, prompt in task_prompts(bench):
        prompts.setdefault(task, set()).add(prompt)
    for task in TASKS:
        samples = read_samples(out, task)
        assert {s["input"] for s in samples} == prompts[task], task
        metric = next(v for k, v in results[task].items() if k.endswith("_accuracy,none"))
        expected = scores[task]["m_avg" if task == "longva_mlvu_dev" else "accuracy"]
        assert metric / 100 == pytest.approx(expected), task
        assert scores[task]["n"] == len(samples) and samples
