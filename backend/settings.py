"""All configuration in one place: environment variables with the `HEADSCOPE_` prefix, or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "headscope"


class Settings(BaseSettings):
    """Settings of one headscope process. Every field reads `HEADSCOPE_<NAME>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="HEADSCOPE_", extra="ignore")

    model: str | None = Field(
        default=None, description="Local model directory or hub id; None = the embedded default model."
    )
    base_model: str | None = Field(
        default=None,
        description="Pre-trained model the classifier was fine-tuned from (atlas comparison); "
        "None = the MiniLM base for the default model, nothing otherwise.",
    )
    task: str = Field(default="rt-snippets", description="Built-in task name or a .csv/.tsv/.jsonl path.")
    metric: Literal["accuracy", "f1", "mcc"] | None = Field(
        default=None, description="Metric for a task file (default accuracy)."
    )
    max_tokens: int = Field(default=128, ge=2, description="Longest input in tokens (capped by the model).")
    device: str | None = Field(default=None, description="torch device; None = cuda when present, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto = float16 on CUDA, float32 on CPU."
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Prepared models, data, results.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_url: str | None = Field(default=None, description="For `headscope ui`: the API to talk to.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed to call the API.")
    queue_size: int = Field(default=16, ge=1, description="Model calls allowed to wait before a 429.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body (413 above).")
    batch_size: int = Field(default=64, ge=1, description="Examples per forward pass in evaluation.")
    layer_cache_bytes: int = Field(
        default=2 * 1024**3, ge=0,
        description="Memory for the hidden states kept per split, and the Layers page's per-layer readouts (0 = none)."
    )
    attention_cache_bytes: int = Field(
        default=1024**3, ge=0,
        description="Memory for memoised /api/attention forwards (least recently used dropped first; 0 = none).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Run sweeps on a Ray cluster: its address (ray://host:10001, auto) or `local` to start one.",
    )
    ray_workers: int | None = Field(
        default=None, ge=1, description="Ray workers (actors) for sweeps; None = one per GPU, else one per CPU."
    )

    @property
    def results_db(self) -> Path:
        return self.cache_dir / "results.sqlite"

    @property
    def fingerprints_file(self) -> Path:
        """Model fingerprints remembered between starts, so a start does not re-hash the weights."""
        return self.cache_dir / "fingerprints.json"
