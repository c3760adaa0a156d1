"""The `headscope` command line as a user types it (typer's runner, the real engine on a tiny model)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from headscope.cli import app
from headscope.engine.atlas import runner
from headscope.engine.atlas.cli import sweep
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.model import load_model
from headscope.engine.store import ResultStore
from headscope.engine.tasks import load_task_file
from headscope.engine.workspace import build_engine
from headscope.settings import Settings
from typer.testing import CliRunner

from tests.helpers import LABELS, write_task_file


def test_sweep_single_head_writes_the_contract_json(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    task_file = write_task_file(tmp_path / "mine.csv")
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
    task_file = write_task_file(tmp_path / "mine.csv")
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


def test_sweep_help_names_every_kind_and_mode_without_loading_torch() -> None:
    """`headscope sweep --help` lists the job kinds and ablation modes their owners hold (KINDS,
    ABLATION_MODES: a new kind or mode shows up by itself) and loads no torch, so it answers at once."""
    code = ("import sys; from typer.testing import CliRunner; from headscope.cli import app; "
            "out = CliRunner().invoke(app, ['sweep', '--help']).output; "
            "print([m for m in ('torch', 'transformers') if m in sys.modules]); print(out)")
    env = {**os.environ, "TERMINAL_WIDTH": "1000"}  # one line per option, as the assertions read them
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    loaded, text = out.split("\n", 1)
    assert loaded == "[]", f"the CLI's help imported {loaded}"
    assert f"Job kind: {', '.join(runner.KINDS)}." in text and "means" in runner.KINDS
    unablated = ", ".join(name for name, kind in runner.KINDS.items() if not kind.uses_mode)
    assert f"Ablation mode: {', '.join(ABLATION_MODES)} ({unablated} ignore it)." in text


def test_sweep_writes_json_and_csv_and_stores_the_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    task_file = write_task_file(tmp_path / "task.csv", rows=16, seed=1)
    settings = Settings(model=str(tiny_model_dir), task=str(task_file), cache_dir=tmp_path / "cache", max_tokens=48)
    result = sweep("single-head", "zero", None, None, tmp_path / "out.json", settings)
    written = json.loads((tmp_path / "out.json").read_text())
    assert written == result and written["n"] == 16 and len(written["delta"]) == 3
    sweep("single-head", "zero", None, None, tmp_path / "out.csv", settings)
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 12 and float(rows[5]["delta"]) == pytest.approx(written["delta"][1][1])
    # a server on the same cache finds the result stored under the API's job id
    manager = JobManager(build_engine(settings))
    job = manager.get(manager.job_id(runner.normalise_params(manager.engine, "single-head", "zero", None, None)))
    assert job is not None and job.state == "done" and job.result == written
