"""What tests share besides fixtures: tiny BERT-family classifiers saved with `save_pretrained` (loaded back
through headscope's production loader by the fixtures in conftest.py), and small tasks made of their
vocabulary. Import from here (`from tests.helpers import make_task`), never from conftest."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
from headscope.engine.interventions import Intervention, intervene
from headscope.engine.model import LoadedModel
from headscope.engine.tasks import Example, Task
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from bench.browser import CHROMIUM

# A browser test module's marks: `pytestmark = [*BROWSER_TEST]` (Debian's Chromium, driven by Playwright).
BROWSER_TEST = [pytest.mark.browser,
                pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]



def console_errors(page) -> list[str]:
    """The page's console errors from now on, filled as they come. Dash's renderer logs some wiring errors
    there and not as script errors (the `page` fixture's check): a callback fired on a page where only
    some of its Inputs exist ("A nonexistent object was used in an `Input`")."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


WORDS = ["the", "movie", "film", "was", "is", "good", "great", "bad", "awful", "not", "very", "plot",
         "acting", "and", "but", "a", "boring", "fun", "love", "hate", ".", ",", "!", "?"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ["negative", "positive"]
TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
            id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})


def drag_zoom(page, start: tuple[float, float], end: tuple[float, float]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Drag a box on the heatmap from `start` to `end` (fractions of its plot area) and wait for the link to
    name the zoom: its query tokens and key tokens, each (first, last)."""
    page.locator("#heatmap").scroll_into_view_if_needed()
    box = page.locator("#heatmap .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=5)
    page.mouse.up()
    page.wait_for_function("new URLSearchParams(location.search).has('zoom')", timeout=120_000)
    zoom = page.evaluate("new URLSearchParams(location.search).get('zoom')")
    rows, cols = [tuple(map(int, span.split("-"))) for span in (zoom.split(",") * 2)[:2]]
    return rows, cols


def _save_tokenizer(directory: Path) -> BertTokenizerFast:
    vocab = directory / "vocab.txt"
    # once each: a token listed twice ("a" is a word and a letter) takes one id, so the ids after it would
    # run past the embedding table (vocab_size = len(tokenizer)) and a word with a "z" would fail
    tokens = dict.fromkeys(SPECIAL + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
                           + list("abcdefghijklmnopqrstuvwxyz"))
    vocab.write_text("\n".join(tokens))
    tokenizer = BertTokenizerFast(str(vocab))
    tokenizer.save_pretrained(directory)
    return tokenizer


NO_SEGMENTS = ("distilbert", "modernbert")  # families whose models take no token_type_ids
KINDS = ("bert", "roberta", "electra", "distilbert", "albert", "modernbert")


def _fit(model, tokenizer, steps: int, seed: int, segments: bool = True) -> None:
    """A few optimiser steps on the toy sentiment rule, so predictions vary and ablations flip some."""
    rows = make_sentences(256, seed=seed + 100)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        chunk = rows[(step * 32) % 256:(step * 32) % 256 + 32]
        batch = tokenizer([t for t, _ in chunk], padding=True, return_tensors="pt", return_token_type_ids=segments)
        loss = model(**batch, labels=torch.tensor([y for _, y in chunk])).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def build_model_dir(directory: Path, kind: str = "bert", seed: int = 0, train_steps: int = 40,
                    **overrides) -> Path:
    """Save a tiny classifier of `kind` (one of :data:`KINDS`), briefly trained, to `directory`.

    ModernBERT: layers 0 and 2 global, layer 1 local with a window of 4 tokens either side; its head
    pools the mean over real tokens unless ``classifier_pooling="cls"`` is passed."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _save_tokenizer(directory)
    torch.manual_seed(seed)
    settings = {**TINY, "vocab_size": len(tokenizer), **overrides}
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(**settings))
    elif kind == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(pad_token_id=0, **settings))
    elif kind == "electra":
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=16, **settings))
    elif kind == "albert":
        model = AlbertForSequenceClassification(AlbertConfig(embedding_size=16, pad_token_id=0,
                                                             classifier_dropout_prob=0.1, **settings))
    elif kind == "distilbert":
        model = DistilBertForSequenceClassification(DistilBertConfig(
            vocab_size=settings["vocab_size"], dim=settings["hidden_size"], n_layers=settings["num_hidden_layers"],
            n_heads=settings["num_attention_heads"], hidden_dim=settings["intermediate_size"],
            max_position_embeddings=settings["max_position_embeddings"], dropout=0.1, attention_dropout=0.1,
            pad_token_id=0, id2label=settings["id2label"], label2id=settings["label2id"]))
    elif kind == "modernbert":
        keep = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "id2label", "label2id")
        config = {k: settings[k] for k in keep} | {
            "global_attn_every_n_layers": 2, "local_attention": 8, "classifier_pooling": "mean",
            "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "bos_token_id": 2, "eos_token_id": 3,
            "attention_dropout": 0.1, "mlp_dropout": 0.1, "embedding_dropout": 0.1,
        } | {k: v for k, v in overrides.items() if k not in keep}
        model = ModernBertForSequenceClassification(ModernBertConfig(**config))
    else:
        raise ValueError(kind)
    _fit(model, tokenizer, train_steps, seed, segments=kind not in NO_SEGMENTS)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def make_sentences(count: int, seed: int = 1) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(2, 14))
        label = int(sum(w in ("good", "great", "fun", "love") for w in words)
                    >= sum(w in ("bad", "awful", "boring", "hate") for w in words))
        rows.append((" ".join(words), label))
    return rows


def write_task_file(path: Path, rows: int = 12, seed: int = 5) -> Path:
    """A task file as a user writes one (columns text, label with label names): :func:`make_sentences`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((text, LABELS[label]) for text, label in make_sentences(rows, seed))
    return path


def make_task(dev: int = 40, train: int = 30, pairs: bool = False, seed: int = 1) -> Task:
    sentences = make_sentences(dev + train, seed)

    def examples(rows: list[tuple[str, int]]) -> list[Example]:
        return [Example(i, text, ("a plot ." if pairs and i % 2 else None) if pairs else None, label)
                for i, (text, label) in enumerate(rows)]

    splits = {"dev": examples(sentences[:dev])}
    if train:
        splits["train"] = examples(sentences[dev:])
    return Task(name="tiny", labels=LABELS, metric="accuracy", splits=splits)


def reference_model(directory: Path):
    """The unmodified transformers model with its own eager attention: the yardstick."""
    return AutoModelForSequenceClassification.from_pretrained(directory, attn_implementation="eager").eval()


def headscope_logits(model: LoadedModel, batch: dict, intervention: Intervention | None = None) -> torch.Tensor:
    with torch.inference_mode(), intervene(intervention or Intervention()):
        hidden = model.embed(batch["input_ids"], batch["token_type_ids"])
        return model.classify(model.run_layers(hidden, batch["attention_mask"]), batch["attention_mask"])


def assert_clear_error(response, status: int, *words: str) -> None:
    """A JSON error with a readable `detail` that names what was wrong, and nothing internal."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for word in words:
        assert word in detail, f"{word!r} missing from {detail!r}"
    assert "Traceback" not in response.text and "/work/" not in response.text and ".py" not in response.text
