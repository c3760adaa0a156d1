"""The `headscope` command line as a user types it (typer's runner, the real engine on a tiny model)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from headscope.cli import app
from headscope.engine.engine import Engine
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore
from headscope.engine.tasks import load_task_file
from typer.testing import CliRunner

from tests.conftest import LABELS, make_sentences


def write_task(path: Path, rows: int = 12) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((text, LABELS[label]) for text, label in make_sentences(rows, seed=5))
    return path


def test_sweep_single_head_writes_the_contract_json(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    task_file = write_task(tmp_path / "mine.csv")
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(app, ["sweep", "--kind", "single-head", "--mode", "uniform", "--model",
                                      str(tiny_model_dir), "--task", str(task_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    body = json.loads(out.read_text())
    assert {"metric", "baseline", "n", "mode", "delta"} <= set(body)
    assert body["mode"] == "uniform" and body["n"] == 12 and body["metric"] == "accuracy"
    flags = np.array(body["significant"])
    assert flags.shape == (3, 4)
    assert f"{int(flags.sum())} of 12 cells significant after Holm's correction" in result.output
    delta = np.array(body["delta"])
    assert delta.shape == (3, 4)
    model = load_model(tiny_model_dir)
    engine = Engine(model, load_task_file(task_file, LABELS), ResultStore(tmp_path / "fresh.sqlite"))
    for layer, head in [(0, 0), (1, 2), (2, 3)]:
        fresh = engine.evaluate([[layer, head]], "uniform", use_store=False)
        assert abs(delta[layer, head] - fresh.delta) < 1e-12


def test_bad_arguments_are_one_clear_line(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    task_file = write_task(tmp_path / "mine.csv")
    runner = CliRunner()
    common = ["--model", str(tiny_model_dir), "--task", str(task_file)]
    bad_mode = runner.invoke(app, ["sweep", "--kind", "layer", "--mode", "half", "--out", "x.json", *common])
    assert bad_mode.exit_code == 1 and "half" in bad_mode.output and "zero" in bad_mode.output
    bad_out = runner.invoke(app, ["sweep", "--kind", "layer", "--mode", "zero", "--out", "x.txt", *common])
    assert bad_out.exit_code == 1 and ".json or .csv" in bad_out.output
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert "Traceback" not in missing.output


def test_version_answers_with_the_installed_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"headscope {version('headscope')}"
