"""The embedded default model: ground-truth parsing, built-in splits, pinned downloads, publishing, prepare."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from headscope.engine import builtin_tasks as bt
from headscope.engine import default_model as dm
from headscope.engine import downloads as dl
from headscope.engine.errors import PrepareError, TaskError
from headscope.engine.publish import publish_once


def _ground_truth(n: int, offset: int = 0) -> str:
    """`n` rated lines, CRLF like the real files; 4 of every 7 means are outside the neutral band."""
    means = [-2.0, -0.49, 0.0, 0.3, 0.5, 1.7, -0.5]
    return "".join(f"{i}\t{means[i % len(means)]}\tsentence {offset + i} here\r\n" for i in range(n))


def _write_data(cache_dir: Path, n: int = 3000) -> None:
    """Lay out `cache_dir/data/` as fetch_snippet_data would, so no download happens."""
    data = cache_dir / "data"
    data.mkdir(parents=True)
    for index, name in enumerate(bt.SNIPPET_FILES.values()):
        (data / name).write_text(_ground_truth(n, offset=index * 100_000), encoding="utf-8")


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pip must not run here")

    monkeypatch.setattr(dl.subprocess, "run", refuse)


def test_parse_ground_truth_drops_the_neutral_band_and_binarises_by_sign() -> None:
    text = (
        "1\t2.27\tgood film\r\n2\t-0.49\tmeh\n\n3\t0.5\tfine\n4\t-0.5\tdull\n"
        "5\t0.0\tnothing\n6\t-3.1\tawful\ttab\n"
    )
    assert bt.parse_ground_truth(text) == [("good film", 1), ("fine", 1), ("dull", 0), ("awful\ttab", 0)]


def test_parse_ground_truth_rejects_malformed_lines() -> None:
    with pytest.raises(TaskError, match="line 2"):
        bt.parse_ground_truth("1\t1.0\tok\n2\tnot-a-number\tbad\n")
    with pytest.raises(TaskError, match="line 1"):
        bt.parse_ground_truth("just one column\n")


def test_rt_snippets_splits_are_seeded_disjoint_and_positional(tmp_path: Path, no_pip: None) -> None:
    _write_data(tmp_path, n=5000)
    task = bt.load_builtin_task("rt-snippets", tmp_path)
    kept = bt.parse_ground_truth(_ground_truth(5000))
    sizes = task.sizes()
    assert sizes == {"dev": 1000, "test": 1000, "train": len(kept) - 2000}
    texts = {split: [ex.text for ex in rows] for split, rows in task.splits.items()}
    assert not set(texts["dev"]) & set(texts["test"])
    assert not set(texts["train"]) & (set(texts["dev"]) | set(texts["test"]))
    assert sorted(texts["dev"] + texts["test"] + texts["train"]) == sorted(t for t, _ in kept)
    for rows in task.splits.values():
        assert [ex.id for ex in rows] == list(range(len(rows)))
        assert all(ex.text_pair is None for ex in rows)
    by_text = dict(kept)
    assert all(ex.label == by_text[ex.text] for rows in task.splits.values() for ex in rows)
    # shuffled, not the file's order, and identical on a second load
    assert texts["dev"] != [t for t, _ in kept[:1000]]
    again = bt.load_builtin_task("rt-snippets", tmp_path)
    assert again.splits == task.splits and again.content_hash == task.content_hash


def test_other_builtin_tasks_have_dev_and_test_only(tmp_path: Path, no_pip: None) -> None:
    _write_data(tmp_path, n=3000)
    kept = bt.parse_ground_truth(_ground_truth(3000))
    for name in ("tweets", "nyt-editorials", "amazon-reviews"):
        task = bt.load_builtin_task(name, tmp_path)
        assert task.name == name
        assert task.sizes() == {"dev": 1000, "test": len(kept) - 1000}
        assert task.reference_split == "dev"


def test_unknown_builtin_task_names_the_known_ones(tmp_path: Path, no_pip: None) -> None:
    with pytest.raises(TaskError, match=r"rt-snippets.*tweets.*nyt-editorials.*amazon-reviews"):
        bt.load_builtin_task("sst2", tmp_path)


def test_too_few_sentences_is_a_task_error(tmp_path: Path, no_pip: None) -> None:
    _write_data(tmp_path, n=100)
    with pytest.raises(TaskError, match="at least"):
        bt.load_builtin_task("tweets", tmp_path)


# --------------------------------------------------------------------------- downloads, faked pip


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _fake_sdist() -> bytes:
    inner = {f"hutto_ICWSM_2014/{name}": f"1\t1.0\t{name}\n".encode() for name in bt.SNIPPET_FILES.values()}
    inner["../../escaped.txt"] = b"path traversal"
    inner["hutto_ICWSM_2014/vader_sentiment_lexicon.txt"] = b"not wanted"
    outer = {
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": _tar_gz(inner),
        "../outside.txt": b"path traversal",
    }
    return _tar_gz(outer)


def _fake_pip(monkeypatch: pytest.MonkeyPatch, payload: bytes, returncode: int = 0) -> list[list[str]]:
    """Replace `pip download` with one that drops `payload` into the `-d` folder."""
    calls: list[list[str]] = []

    def run(command, **kwargs):
        calls.append(command)
        if returncode == 0:
            dest = Path(command[command.index("-d") + 1])
            (dest / "vaderSentiment-3.3.2.tar.gz").write_bytes(payload)
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(dl.subprocess, "run", run)
    return calls


def test_sha256_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, b"not the real sdist")
    with pytest.raises(PrepareError, match=f"expected {dl.VADER_SHA256}"):
        dl.fetch_snippet_data(tmp_path / "cache")
    assert not any((tmp_path / "cache" / "data").glob("*.txt"))


def test_verify_sha256_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "x.whl"
    path.write_bytes(b"abc")
    dl.verify_sha256(path, hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(PrepareError, match="sha256"):
        dl.verify_sha256(path, dl.MINILM_SHA256)


def test_pip_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, b"", returncode=1)
    with pytest.raises(PrepareError, match=r"(?s)pip download vaderSentiment==3\.3\.2.*No matching"):
        dl.fetch_snippet_data(tmp_path)


def test_fetch_reads_only_the_four_files_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _fake_sdist()
    monkeypatch.setattr(dl, "VADER_SHA256", hashlib.sha256(payload).hexdigest())
    cache = tmp_path / "a" / "b" / "cache"
    calls = _fake_pip(monkeypatch, payload)
    data = dl.fetch_snippet_data(cache)
    assert data == cache / "data"
    assert sorted(p.name for p in data.glob("*.txt")) == sorted(bt.SNIPPET_FILES.values())
    assert (data / "tweets_GroundTruth.txt").read_text() == "1\t1.0\ttweets_GroundTruth.txt\n"
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("outside.txt"))
    assert "--no-binary" in calls[0] and "--no-deps" in calls[0]
    dl.fetch_snippet_data(cache)
    assert len(calls) == 1


def test_finished_model_is_returned_without_work(tmp_path: Path, no_pip: None) -> None:
    target = dm.default_model_dir(tmp_path)
    target.mkdir(parents=True)
    (target / dm.METADATA_FILE).write_text(json.dumps({"dev_accuracy": 0.9}))
    assert dm.prepare_default_model(tmp_path) == target
    assert dm.load_metadata(target) == {"dev_accuracy": 0.9}


def test_half_written_model_dir_is_not_taken_for_a_model(tmp_path: Path, no_pip: None) -> None:
    target = dm.default_model_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    with pytest.raises(PrepareError, match=r"headscope\.json"):
        dm.prepare_default_model(tmp_path)


# --------------------------------------------------------------------------- the real thing


@pytest.mark.network
def test_prepare_default_model_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads ~86 MB through pip, fine-tunes 3 steps, scores dev and test (about a minute on 2 cores)."""
    leftover = tmp_path / "models" / ".minilm-rt-snippets.tmp-crashed"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")

    model_dir = dm.prepare_default_model(tmp_path, max_steps=3, progress=False)

    assert model_dir == dm.default_model_dir(tmp_path)
    assert not leftover.exists()
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "headscope.json"} <= names
    assert not list(model_dir.glob("*.bin"))
    meta = dm.load_metadata(model_dir)
    assert meta["steps"] == 3 and meta["seed"] == 13 and meta["train_size"] == 8072
    assert 0.0 <= meta["dev_accuracy"] <= 1.0 and 0.0 <= meta["test_accuracy"] <= 1.0
    assert meta["minilm_wheel_sha256"] == dl.MINILM_SHA256
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["finetuning_task"] == "rt-snippets"
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    task = bt.load_builtin_task("rt-snippets", tmp_path)
    assert task.sizes() == {"dev": 1000, "test": 1000, "train": 8072}

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("a prepared model was trained again")

    monkeypatch.setattr(dm, "_train", no_training)
    assert dm.prepare_default_model(tmp_path, max_steps=3, progress=False) == model_dir


# --------------------------------------------------------------------------- publishing


def test_a_failed_build_leaves_nothing_and_the_next_one_publishes(tmp_path: Path) -> None:
    target = tmp_path / "models" / "thing"

    def broken(staging: Path) -> None:
        (staging / "half").write_text("x")
        raise PrepareError("pip failed")

    with pytest.raises(PrepareError):
        publish_once(target, lambda d: (d / "done").is_file(), broken)
    assert not target.exists() and not list(target.parent.glob(".thing.tmp-*"))
    target.mkdir()  # an unfinished earlier target is replaced
    publish_once(target, lambda d: (d / "done").is_file(), lambda staging: (staging / "done").write_text("ok"))
    assert sorted(p.name for p in target.iterdir()) == ["done"]


def test_a_second_builder_waits_for_the_first_and_builds_nothing(tmp_path: Path) -> None:
    target = tmp_path / "thing"
    building, release = threading.Event(), threading.Event()
    builds: list[str] = []

    def slow(staging: Path) -> None:
        builds.append("first")
        building.set()
        release.wait(30)
        (staging / "done").write_text("ok")

    def finished(directory: Path) -> bool:
        return (directory / "done").is_file()

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(publish_once, target, finished, slow)
        assert building.wait(30)
        second = pool.submit(publish_once, target, finished, lambda staging: builds.append("second"))
        release.set()
        assert first.result(30) == second.result(30) == target
    assert builds == ["first"] and (target / "done").read_text() == "ok"
