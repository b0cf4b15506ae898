"""V-NIAH cell scoring: golden parity through the scorer, grid semantics, caching and resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from longva_plugins.models.longva import LongVAForCausalLM
from longva_plugins.models.longva.processing_longva import LongVAImageProcessor
from longva_plugins.fileio import atomic_write_bytes
from longva_plugins.vniah.cache import CellStore, EmbeddingCache
from longva_plugins.vniah.grid import PRESETS, insertion_index, layout, parse_grid
from longva_plugins.vniah.haystack import Haystack, SyntheticHaystack
from longva_plugins.vniah.needles import Needle
from longva_plugins.vniah.scoring import POST_TEXT, PRE_TEXT, VNIAHScorer

GOLDEN_DIR = Path(os.environ.get("LONGVA_GOLDEN_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "longva_tiny_a"))


class ArrayHaystack(Haystack):
    def __init__(self, frames: np.ndarray, identity: str):
        self._frames, self.identity, self.length = frames, identity, len(frames)

    def frames(self, indices):
        return self._frames[list(indices)]


class IdProcessor:
    """The fixture has no tokenizer: map each text piece to the stored ids."""

    def __init__(self, table: dict[str, list[int]]):
        self.table = table
        self.image_processor = LongVAImageProcessor()

    def tokenize(self, text):
        return torch.tensor(self.table[text])

    def fingerprint(self):
        return json.dumps(self.table, sort_keys=True)

    def preprocess_frames(self, frames, mode="crop"):
        return self.image_processor(frames, mode=mode)


def _vniah_cases():
    cases = json.loads((GOLDEN_DIR / "cases.json").read_text())["cases"]
    return [(name, case) for name, case in sorted(cases.items()) if "prompt_layout" in case or "depth" in case]


@pytest.mark.golden
@pytest.mark.parametrize("name,case", _vniah_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_scorer_reproduces_reference_cells(tmp_path, name, case):
    arrays = np.load(GOLDEN_DIR / f"case_{name}.npz")
    model = LongVAForCausalLM.from_pretrained(GOLDEN_DIR, attn_implementation="eager")
    table = {PRE_TEXT: case["pre_ids"], "QUESTION": case["question_ids"], POST_TEXT: case["post_ids"]}
    for answer_name, answer in case["answers"].items():
        table[answer_name] = answer["answer_ids"]
    scorer = VNIAHScorer(model, IdProcessor(table), ArrayHaystack(arrays["haystack_frames"], "fixture"),
                         [Needle(arrays["needle"], "QUESTION", "unused", id="needle")], "fixture",
                         cache=EmbeddingCache(tmp_path), prefill_chunk_size=300)
    block = scorer.cell_block(case["num_frames"], case["depth"], 0)
    prompt = scorer.prompt_embeds(block, "QUESTION")
    assert (prompt[0] - torch.from_numpy(arrays["prompt_embeds"])).abs().max() <= 1e-5
    outcomes = set()
    for answer_name, answer in case["answers"].items():
        record = scorer.score(case["num_frames"], case["depth"], 0, answer=answer_name)
        assert record["pred_ids"] == answer["pred_ids"]
        assert record["correct"] == answer["correct"]
        outcomes.add(record["correct"])
        span = model.score_continuation(prompt, torch.tensor(answer["answer_ids"]), chunk_size=300).span_logits
        assert (span - torch.from_numpy(arrays[f"{answer_name}__answer_span_logits"])).abs().max() <= 1e-4
    assert outcomes == {0, 1} or len(case["answers"]) < 2


def test_insertion_follows_the_reference_rule():
    assert insertion_index(0.5, 6) == 3
    assert layout(6, 0.5) == [0, 1, 2, None, 3, 4, 5]
    assert layout(4, 0.0) == [None, 0, 1, 2, 3]
    assert layout(4, 1.0) == [0, 1, 2, 3, None]
    assert layout(5, 0.2) == [0, None, 1, 2, 3, 4]  # int(0.2 * 5) = 1


def test_paper_grid_and_custom_grids():
    paper = PRESETS["paper"]
    assert paper.frame_counts == list(range(200, 3001, 200)) and len(paper.frame_counts) == 15
    assert paper.depths == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    custom = parse_grid("frames=2:6:2;depths=0,1")
    assert custom.frame_counts == [2, 4, 6] and custom.depths == (0.0, 1.0)
    from longva_plugins.errors import SettingError

    with pytest.raises(SettingError, match="frames=MIN:MAX:STEP"):
        parse_grid("bogus")
    with pytest.raises(SettingError, match="depths"):
        parse_grid("frames=1:2:1;depths=1.5")


def test_synthetic_haystack_is_deterministic_and_varies():
    a, b = SyntheticHaystack(seed=3), SyntheticHaystack(seed=3)
    np.testing.assert_array_equal(a.frames([0, 7]), b.frames([0, 7]))
    assert not np.array_equal(a.frame(0), a.frame(1))
    assert not np.array_equal(a.frame(0), SyntheticHaystack(seed=4).frame(0))


@pytest.fixture(scope="module")
def tiny():
    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.testing import ensure_tiny_checkpoint

    path = ensure_tiny_checkpoint()
    return LongVAForCausalLM.from_pretrained(path), LongVAProcessor.from_pretrained(path)


def _scorer(tiny, root):
    from longva_plugins.vniah.needles import synthetic_needles

    model, processor = tiny
    return VNIAHScorer(model, processor, SyntheticHaystack(seed=1, size=(48, 64)), synthetic_needles()[:2],
                       "synthetic:v1", cache=EmbeddingCache(root))


def test_interrupted_grid_resumes_without_recomputing(tiny, tmp_path, monkeypatch):
    cells = [(n, d, k) for n in (2, 4) for d in (0.0, 1.0) for k in (0, 1)]
    first = _scorer(tiny, tmp_path)
    model = first.model
    real = model.score_continuation
    calls = {"n": 0}

    def crash_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "score_continuation", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        for cell in cells:
            first.score(*cell)
    assert first.scored == 3
    monkeypatch.setattr(model, "score_continuation", real)
    second = _scorer(tiny, tmp_path)
    records = [second.score(*cell) for cell in cells]
    assert second.scored == len(cells) - 3, "finished cells must come from the store"
    fresh = _scorer(tiny, tmp_path / "fresh")
    assert [fresh.score(*cell) for cell in cells] == records, "a resumed grid must equal an uninterrupted one"
    third = _scorer(tiny, tmp_path)
    assert [third.score(*cell) for cell in cells] == records and third.scored == 0


def test_embeddings_are_computed_once_per_frame(tiny, tmp_path):
    scorer = _scorer(tiny, tmp_path)
    scorer.cell_block(4, 0.5, 0)
    misses = scorer.cache.misses
    assert misses == 4 + 1  # four haystack frames and one needle
    scorer.cell_block(4, 0.0, 1)
    scorer.cell_block(2, 1.0, 0)
    assert scorer.cache.misses == misses + 1  # only the second needle is new


def test_cache_never_leaves_partial_files(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "entry.pt"

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"x" * 1000)
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == [], "temporary file left behind"
    monkeypatch.undo()
    atomic_write_bytes(target, b"ok")
    assert target.read_bytes() == b"ok"


def test_cell_store_round_trip(tmp_path):
    store = CellStore(tmp_path)
    assert store.get(a=1, b="x") is None
    store.put({"correct": 1}, a=1, b="x")
    assert store.get(b="x", a=1) == {"correct": 1}


def test_prefix_reuse_matches_full_scoring(tiny, tmp_path):
    cells = [(4, 0.5, 0), (8, 1.0, 1), (8, 0.25, 0), (4, 1.0, 1), (6, 0.0, 0)]
    reuse = _scorer(tiny, tmp_path / "a")
    plain = _scorer(tiny, tmp_path / "b")
    plain.reuse_prefix = False
    for cell in cells:
        a, b = reuse.score(*cell), plain.score(*cell)
        assert a["pred_ids"] == b["pred_ids"] and a["correct"] == b["correct"]
        assert abs(a["nll_mean"] - b["nll_mean"]) < 1e-4


@pytest.mark.parametrize("part", ["model.layers.1.mlp.down_proj.weight", "vision_tower.vision_tower.encoder.layers.0.mlp.fc1.weight"])
def test_changing_one_weight_misses_the_cache(tiny, tmp_path, part):
    """A fine-tune or merged LoRA that changes one decoder-layer (or vision-tower) tensor must not
    be served the old model's cells or embeddings."""
    import copy

    model, processor = tiny
    first = _scorer(tiny, tmp_path)
    record = first.score(4, 0.5, 0)
    assert first.scored == 1
    again = _scorer(tiny, tmp_path)
    assert again.score(4, 0.5, 0) == record and again.scored == 0, "an unchanged model is served from the store"
    changed = copy.deepcopy(model)
    params = dict(changed.named_parameters())
    name = next(n for n in params if n.endswith(part))
    with torch.no_grad():
        params[name].view(-1)[0] += 1e-3
    scorer = VNIAHScorer(changed, processor, first.haystack, first.needles, first.needle_set_id,
                         cache=EmbeddingCache(tmp_path))
    assert scorer.fingerprint != first.fingerprint
    misses = scorer.cache.misses
    scorer.score(4, 0.5, 0)
    assert scorer.scored == 1, f"changing {name} must recompute the cell"
    assert scorer.cache.misses > misses, "and its embeddings"


def test_fingerprint_covers_the_tokenizer(tiny):
    from longva_plugins.vniah.cache import model_fingerprint

    model, processor = tiny

    class OtherTokenizer:
        def fingerprint(self):
            return "another tokenizer"

    assert model_fingerprint(model, processor) != model_fingerprint(model, OtherTokenizer())
    assert model_fingerprint(model, processor) == model_fingerprint(model, processor)


def _trie_nodes(item_lists) -> int:
    """Distinct non-empty prefixes of the cells' item lists: what a grid must prefill at least once."""
    return len({tuple(items[:i]) for items in item_lists for i in range(1, len(items) + 1)})


def test_one_kv_cache_grows_with_the_insertion_index_and_is_cropped_back(tiny, tmp_path, monkeypatch):
    """Cells in insertion-index order share one cache object, cropped back to before the cell's
    question after each cell (no copies); every distinct prefix of the grid's image sequences --
    haystack frames before a needle, a needle and the frames after it -- is prefilled exactly once."""
    from longva_plugins.vniah.cells import needle_cell
    from longva_plugins.vniah.grid import cell_order_key

    scorer = _scorer(tiny, tmp_path)
    tokens = scorer.model.config.tokens_per_frame
    prefilled = []
    real = scorer._prefill_items

    def recording(cache, items):
        prefilled.append(len(items))
        return real(cache, items)

    monkeypatch.setattr(scorer, "_prefill_items", recording)
    cells = sorted([(n, d, k) for n in (4, 8) for d in (0.0, 0.5, 1.0) for k in (0, 1)], key=lambda c: cell_order_key(*c))
    caches = set()
    for n, d, k in cells:
        scorer.score(n, d, k)
        caches.add(id(scorer._prefix_cache))
        # [prefix | haystack[:idx] | needle | haystack[idx:n]]: the question and answer dropped
        assert scorer._prefix_cache.get_seq_length() == scorer._prefix_pre_len + (n + 1) * tokens
    assert len(caches) == 1, "one KV cache for the whole grid"
    assert sum(prefilled) == _trie_nodes([needle_cell(*c) for c in cells]), "each shared prefix is prefilled once"


def test_cells_with_the_same_prefix_and_needle_extend_the_previous_tail(tiny, tmp_path, monkeypatch):
    """depth 0 over several frame counts: the needle and the frames after it are prefilled once for
    the longest count (each shorter count's tail is a prefix of the next), results equal plain scoring."""
    from longva_plugins.vniah.grid import cell_order_key

    scorer = _scorer(tiny, tmp_path / "a")
    plain = _scorer(tiny, tmp_path / "b")
    plain.reuse_prefix = False
    frames_prefilled = []
    real = scorer._prefill_items

    def recording(cache, items):
        frames_prefilled.append(sum(isinstance(i, int) for i in items))
        return real(cache, items)

    monkeypatch.setattr(scorer, "_prefill_items", recording)
    cells = sorted([(n, 0.0, k) for n in (2, 4, 8) for k in (0, 1)], key=lambda c: cell_order_key(*c))
    assert [c[2] for c in cells] == [0, 0, 0, 1, 1, 1] and [c[0] for c in cells] == [2, 4, 8] * 2
    for cell in cells:
        a, b = scorer.score(*cell), plain.score(*cell)
        assert a["pred_ids"] == b["pred_ids"] and a["correct"] == b["correct"]
        assert abs(a["nll_mean"] - b["nll_mean"]) < 1e-4
    assert sum(frames_prefilled) == 2 * 8, "each needle's tail frames prefilled once, for the longest count"


def test_any_cells_in_order_key_order_prefill_each_prefix_once_and_match_plain_scoring(tiny, tmp_path, monkeypatch):
    """The family's cells (a distractor beside the needle, several needles) on the one KV cache: in
    :func:`order_key` order every distinct prefix is prefilled once, and every outcome equals
    scoring the whole sequence from scratch."""
    from longva_plugins.vniah.cells import distractor_cell, order_key
    from longva_plugins.vniah.multi import build_cell
    from longva_plugins.vniah.needles import synthetic_distractors

    scorer = _scorer(tiny, tmp_path / "a")
    scorer.distractors, scorer.distractor_set_id = synthetic_distractors(), "synthetic-distractors"
    plain = _scorer(tiny, tmp_path / "b")
    plain.distractors, plain.distractor_set_id = scorer.distractors, scorer.distractor_set_id
    plain.reuse_prefix = False
    cells = [(distractor_cell(8, d, k, side, 3), scorer.needles[k].question, scorer.needles[k].answer)
             for d, side in ((0.5, "before"), (0.5, "after"), (0.0, "after"), (1.0, "before")) for k in (0, 1)]
    for kind in ("retrieval", "ordering", "counting"):
        cell = build_cell(kind, 6, 2, 1, scorer.needles)
        cells += [(cell.items, q, a) for q, a, _ in cell.tries("mc")[:2]]
    cells.sort(key=lambda c: order_key(c[0]))
    prefilled = []
    real = scorer._prefill_items
    monkeypatch.setattr(scorer, "_prefill_items", lambda cache, items: (prefilled.append(len(items)), real(cache, items))[1])
    for items, question, answer in cells:
        a, b = scorer.score_items(items, question, answer), plain.score_items(items, question, answer)
        assert a["pred_ids"] == b["pred_ids"] and a["correct"] == b["correct"]
        assert abs(a["nll_mean"] - b["nll_mean"]) < 1e-4
    assert sum(prefilled) == _trie_nodes([c[0] for c in cells])
    assert scorer.scored == len({(tuple(map(str, c[0])), c[1], c[2]) for c in cells})


SP_CELLS = [(4, 0.0, 0), (4, 0.5, 1), (8, 0.25, 0), (8, 1.0, 1)]


def _sequence_parallel_worker(rank, out_dir):
    import json

    import torch.distributed as dist

    from longva_plugins.attention import SHARDED_KV
    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.testing import ensure_tiny_checkpoint

    path = ensure_tiny_checkpoint()
    model = LongVAForCausalLM.from_pretrained(path, attn_implementation=SHARDED_KV)
    scorer = _scorer((model, LongVAProcessor.from_pretrained(path)), Path(out_dir) / f"cache{rank}")
    scorer.reserve(max(c[0] for c in SP_CELLS))  # as the adapter does before a grid
    collective = []  # numel of every all-gather / all-reduce while scoring: only metadata may travel so
    real = {name: getattr(dist, name) for name in ("all_gather", "all_reduce")}

    def recording(name):
        def call(*args, **kwargs):
            tensor = args[1] if name == "all_gather" else args[0]
            collective.append(tensor.numel())
            return real[name](*args, **kwargs)
        return call

    for name in real:
        setattr(dist, name, recording(name))
    records, shares, buffers, exchange = [], [], set(), set()
    try:
        for cell in sorted(SP_CELLS, key=lambda c: insertion_index(c[1], c[0])):
            records.append(scorer.score(*cell))
            cache = scorer._prefix_cache
            shares.append([cache.stored(r) for r in range(cache.world)] + [cache.get_seq_length()])
            buffers |= {(i, layer._buffers[0].data_ptr(), layer._buffers[0].shape[-2]) for i, layer in enumerate(cache.layers)}
            exchange |= {(str(key), buffer.data_ptr()) for key, buffer in cache.exchange._buffers.items()}
    finally:
        for name, function in real.items():
            setattr(dist, name, function)
    with open(Path(out_dir) / f"sp{rank}.json", "w") as handle:
        json.dump({"records": records, "stored": scorer._prefix_cache.stored(), "shares": shares,
                   "total": scorer._prefix_cache.get_seq_length(), "buffers": sorted(buffers),
                   "capacity": scorer.capacity, "chunk": scorer.forward_tokens(),
                   "layers": len(scorer._prefix_cache.layers), "collective": max(collective, default=0),
                   "exchange": sorted(exchange)}, handle)


@pytest.mark.distributed
def test_sequence_parallel_cells_equal_one_process(tiny, tmp_path):
    """The V-NIAH scorer with its KV cache split over 2 gloo ranks (``longva_sharded_kv``) scores
    every cell as one process does; each rank stores part of the prefix cache."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attention"))
    from ring_reference import spawn_ranks

    spawn_ranks(_sequence_parallel_worker, 2, tmp_path)
    single = _scorer(tiny, tmp_path / "single")
    expected = {(c[0], c[1], c[2]): single.score(*c) for c in SP_CELLS}
    results = [json.loads((tmp_path / f"sp{r}.json").read_text()) for r in range(2)]
    for result in results:
        for record in result["records"]:
            want = expected[(record["frames"], record["depth"], 0 if record["needle"] == single.needles[0].id else 1)]
            assert record["pred_ids"] == want["pred_ids"] and record["correct"] == want["correct"]
            assert abs(record["nll_mean"] - want["nll_mean"]) <= 1e-3 * max(1.0, abs(want["nll_mean"]))
    assert results[0]["total"] == results[1]["total"]
    assert 0 < results[0]["stored"] < results[0]["total"] and results[0]["stored"] + results[1]["stored"] == results[0]["total"]
    # the cause of issue 37, guarded: each rank stores at most its share of a cell's tokens plus
    # one forward's, and allocates every layer once, for its share of the longest cell plus one
    # forward (a chunk kept by one rank, or new tokens written past a full buffer, reallocated
    # them and left the freed buffers in the heap) ...
    chunk, capacity = results[0]["chunk"], results[0]["capacity"]
    assert results[0]["shares"] == results[1]["shares"]
    for *stored, total in results[0]["shares"]:
        assert sum(stored) == total and max(stored) <= -(-total // 2) + chunk
    for result in results:
        assert len(result["buffers"]) == result["layers"], "a layer's buffers were reallocated"
        assert all(length == -(-capacity // 2) + chunk for _, _, length in result["buffers"])
        # ... and the partial attentions travel point to point in buffers allocated once per cache,
        # never through a collective that allocates its own per call (gloo's all-gather and
        # all-reduce of them left tens of MiB of freed blocks in every rank's heap)
        assert result["collective"] <= 16
        assert result["exchange"] and len({key for key, _ in result["exchange"]}) == len(result["exchange"])
