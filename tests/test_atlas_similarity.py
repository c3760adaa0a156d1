"""Pre-trained vs fine-tuned: per-head cosine similarity of attention maps, and what it refuses to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.similarity import attention_similarity
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError, ModelLoadError

from tests.helpers import build_model_dir


def test_similarity_is_one_against_itself_and_lower_against_another_base(engine: Engine, tiny_model_dir: Path,
                                                                        tmp_path: Path) -> None:
    same = attention_similarity(engine, str(tiny_model_dir), "dev", 8)
    np.testing.assert_allclose(same["similarity"], 1.0, atol=1e-6)
    other = build_model_dir(tmp_path / "other", seed=3, train_steps=5)
    different = np.array(attention_similarity(engine, str(other), "dev", 8)["similarity"])
    assert different.shape == (3, 4) and (different < 0.999).all() and (different > 0).all()
    assert same["base_model"] == tiny_model_dir.name  # a name, never a server path


def test_similarity_refuses_pickled_or_mismatched_bases(engine: Engine, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="safetensors"):
        attention_similarity(engine, str(pickled), "dev", 4)
    wider = build_model_dir(tmp_path / "wider", train_steps=1, num_attention_heads=8)
    with pytest.raises(InputError, match="8 heads"):
        attention_similarity(engine, str(wider), "dev", 4)
    manager = JobManager(engine, base_model=str(wider))
    job = manager.wait(manager.submit("similarity", None, "dev", 4).id, timeout=60)
    assert job.state == "failed" and "cannot be compared" in job.error
    manager.close()
