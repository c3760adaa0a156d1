"""The production loader and task files: what loads, and the clear errors for what must not."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.engine import Engine
from headscope.engine.errors import ModelLoadError, TaskError
from headscope.engine.interventions import ATTN_IMPLEMENTATION
from headscope.engine.model import load_model
from headscope.engine.tasks import load_task_file
from headscope.settings import Settings
from transformers import BertConfig, BertModel

from tests.helpers import LABELS, build_model_dir


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
def test_supported_architectures_load_with_headscope_attention(kind: str, tmp_path: Path) -> None:
    model = load_model(build_model_dir(tmp_path, kind=kind), max_tokens=500)
    assert model.config._attn_implementation == ATTN_IMPLEMENTATION
    assert not model.model.training and not any(p.requires_grad for p in model.model.parameters())
    assert model.max_tokens == (62 if kind == "roberta" else 64)  # capped by the model's positions
    assert model.labels == LABELS and model.device.type == "cpu" and model.dtype == torch.float32
    info = model.describe()
    assert info["architecture"].lower().startswith(kind) and info["num_heads"] == 4


def test_fingerprint_changes_with_weights_and_config(tmp_path: Path) -> None:
    a = load_model(build_model_dir(tmp_path / "a", seed=1)).fingerprint
    assert load_model(build_model_dir(tmp_path / "b", seed=1)).fingerprint == a
    assert load_model(build_model_dir(tmp_path / "c", seed=2)).fingerprint != a
    directory = build_model_dir(tmp_path / "d", seed=1)
    config = json.loads((directory / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "good"}
    (directory / "config.json").write_text(json.dumps(config))
    assert load_model(directory).fingerprint != a


def test_a_start_reuses_the_fingerprint_until_any_file_changes(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashing reads every byte of the weights (BERT-large: seconds on every start): the fingerprint is kept
    in the cache dir and reused while config.json and every safetensors file are unchanged, and hashed again
    when any changes, even rewritten in place at the same size with its modification time set back."""
    from headscope.engine import model as model_module

    hashed: list[str] = []
    original = model_module._hash_files
    monkeypatch.setattr(model_module, "_hash_files", lambda files: hashed.append("hashed") or original(files))
    known = tmp_path / "cache" / "fingerprints.json"
    directory = build_model_dir(tmp_path / "m", seed=1)

    def start(fingerprints: Path | None = known) -> tuple[str, bool]:
        """A start's fingerprint, and whether it read the files to hash them."""
        before = len(hashed)
        return load_model(directory, fingerprints=fingerprints).fingerprint, len(hashed) > before

    first, read = start()
    assert read and known.is_file()
    assert start() == (first, False)  # the second start read no weights to hash them
    assert start(None) == (first, True)  # without the file: hashed, the same fingerprint

    weights = directory / "model.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(b ^ 0xFF for b in data[-4:])  # the last weight's bytes: same size, other numbers
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    changed, read = start()
    assert changed != first and read
    assert start(None) == (changed, True)  # what a fresh hash says
    assert start() == (changed, False)

    build_model_dir(tmp_path / "m", seed=2)  # other weights saved over the directory
    other, read = start()
    assert other not in (first, changed) and read
    known.write_text("{not json")  # a damaged file: hashed again, never an error
    assert start() == (other, True)
    assert start() == (other, False)


def test_a_tokenizer_that_gives_ids_past_the_embedding_table_is_refused_at_load(tmp_path: Path) -> None:
    """Such a pair would load and then fail (a 500) on the first input holding the token, or the first text
    pair where the model has one token type: refused at load, naming both numbers."""
    from transformers import AutoTokenizer

    directory = build_model_dir(tmp_path, train_steps=0)
    rows = load_model(directory).model.get_input_embeddings().num_embeddings
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_tokens(["zzzz"])  # id `rows`: one past the table
    tokenizer.save_pretrained(directory)
    with pytest.raises(ModelLoadError, match=rf"ids up to {rows} \(token 'zzzz'\).* has {rows} rows"):
        load_model(directory)
    one_type = build_model_dir(tmp_path / "one-type", train_steps=0, type_vocab_size=1)  # pairs' segment 1: none
    with pytest.raises(ModelLoadError, match=r"second segment with token type 1 but the model has 1 token type"):
        load_model(one_type)


def test_every_letter_has_an_embedding(engine: Engine, tmp_path: Path) -> None:
    """The tests' tokenizer spells unknown words in letters, "z" included (it once had an id past the
    table: "a" is listed as a word and as a letter)."""
    text = "a zany quiz about jazz"
    with TestClient(create_app(Settings(cache_dir=tmp_path), engine=engine)) as client:
        answer = client.post("/api/attention", json={"text": text, "format": "thumb"})
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["tokens"]
    assert tokens == engine.model.tokenizer.convert_ids_to_tokens(engine.model.encode_one(text)["input_ids"])
    assert "z" in tokens and "##z" in tokens


def test_float32_override_and_explicit_device(tmp_path: Path) -> None:
    model = load_model(build_model_dir(tmp_path), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    directory = build_model_dir(tmp_path)
    state = {k: v.clone() for k, v in load_model(directory).model.state_dict().items()}
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickled weights"):
        load_model(directory)


def test_unknown_architecture_names_what_is_supported(tmp_path: Path) -> None:
    BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"BertModel.*not supported.*BertForSequenceClassification"):
        load_model(tmp_path)


def test_corrupt_weights_are_a_load_error(tmp_path: Path) -> None:
    directory = build_model_dir(tmp_path)
    (directory / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_model(directory)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_task_files_in_every_format(tmp_path: Path, suffix: str) -> None:
    rows = [("the movie was good", "a plot", "positive"), ("awful", "", "0"), ("fun , not boring", "", "1")]
    path = tmp_path / f"mine{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "text_pair": p or None, "label": y}) for t, p, y in rows))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writerows([("text", "text_pair", "label"), *rows])
    task = load_task_file(path, LABELS)
    assert list(task.splits) == ["dev"] and task.reference_split == "dev"
    assert [(e.id, e.text, e.text_pair, e.label) for e in task.split(None)] == [
        (0, "the movie was good", "a plot", 1), (1, "awful", None, 0), (2, "fun , not boring", None, 1)]
    assert task.metric == "accuracy"
    assert load_task_file(path, LABELS, "mcc").metric == "mcc"


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("text,label\n", ".csv", "no rows"),
    ("sentence,label\nhi,1\n", ".csv", r"lacks column\(s\) \['text'\]"),
    ("text,label\nhi,neutral\n", ".csv", "row 1: label 'neutral' is not one of"),
    ("text,label\nhi,7\n", ".csv", "row 1: label id 7 is out of range 0..1"),
    ("text,label\n ,1\n", ".csv", "row 1: empty or missing text"),
    ('{"text": "hi", "label": 1}\n{oops\n', ".jsonl", "line 2: not valid JSON"),
    ("text\tlabel\nhi\t\n", ".tsv", "row 1: missing label"),
    ("text,label\nhi,1\n", ".xlsx", "must end in .csv, .tsv or .jsonl"),
])
def test_malformed_task_files_say_what_is_wrong(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(TaskError, match=message):
        load_task_file(path, LABELS)


def test_unknown_split_and_bad_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\na,1\nb,0\n")
    task = load_task_file(path, LABELS)
    with pytest.raises(TaskError, match="unknown split 'train'; this task has: dev"):
        task.split("train")
    with pytest.raises(TaskError, match="limit must be at least 1, got 0"):
        task.select("dev", 0)
    assert len(task.select("dev", 99)) == 2


def test_task_specs_resolve_or_say_what_is_accepted(tmp_path: Path) -> None:
    from headscope.engine.workspace import resolve_task

    path = tmp_path / "mine.jsonl"
    path.write_text('{"text": "good", "label": "positive"}\n')
    assert resolve_task(str(path), LABELS, tmp_path).split("dev")[0].label == 1
    with pytest.raises(TaskError, match=r"unknown task 'sst-2'.*rt-snippets.*glue/<name>"):
        resolve_task("sst-2", LABELS, tmp_path)
    with pytest.raises(TaskError, match="unknown GLUE task 'glue/foo'"):
        resolve_task("glue/foo", LABELS, tmp_path)
