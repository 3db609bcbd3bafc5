"""StyleOps settings: environment variables, an optional TOML file, and the embedded store's state.

Precedence (highest first): explicit arguments, environment (`STYLEOPS_*` and the standard AWS
variables), the TOML file named by `STYLEOPS_CONFIG` (default `./styleops.toml` if present),
then the defaults below. When no endpoint and no credentials are configured, the embedded
SeaweedFS store started by `styleops store start` is used (its endpoint and generated
credentials live under `<home>/store/`).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _config_file() -> Path:
    return Path(os.environ.get("STYLEOPS_CONFIG", "styleops.toml"))


class Settings(BaseSettings):
    """Everything StyleOps reads from the environment. Secrets are `SecretStr` (never logged)."""

    model_config = SettingsConfigDict(env_prefix="STYLEOPS_", extra="ignore", populate_by_name=True)

    home: Path = Field(default=Path("~/.styleops").expanduser(), description="State dir: embedded store, caches.")
    bucket: str = "styleops"
    endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("STYLEOPS_ENDPOINT_URL", "AWS_ENDPOINT_URL", "endpoint_url")
    )
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "aws_access_key_id"), repr=False
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")
    )
    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "region")
    )
    prefect_server: Literal["kept", "ephemeral"] = Field(
        default="kept",
        description="Without PREFECT_API_URL, the CLI's Prefect API: 'kept', one local server left running across "
        "commands (state in <home>/prefect/; `styleops server stop`), or 'ephemeral', Prefect's temporary server "
        "started and stopped by every command (about 6 s more per command).",
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")
    vgg_weights: Path | None = Field(
        default=None,
        description="Local VGG weights (.safetensors or state dict). None: look in the cache, then torchvision.",
    )
    magenta_weights: Path | None = Field(
        default=None,
        description="Magenta's converted arbitrary-stylization weights (.safetensors). "
        "None: the cache's, from `styleops weights install` (sha256-pinned).",
    )
    adain_weights: Path | None = Field(
        default=None,
        description="AdaIN's normalised VGG19 encoder (.safetensors). "
        "None: the cache's, from `styleops weights install`.",
    )
    compile: bool | Literal["auto"] = Field(
        default="auto",
        description=(
            "torch.compile feed-forward nets on CUDA (2.0-2.4x at 1024 px on an H100; compiles per size bucket). "
            "'auto': when the run has at least compile_min_images images to do; false: never (the way out)."
        ),
    )
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto",
        description=(
            "What runs the feed-forward nets and the metrics' VGG on a CPU. 'auto': onnxruntime when it is "
            "installed (1.1-1.5x torch's eager kernels; docs/benchmarks.md), else torch; GPUs always run torch."
        ),
    )
    compile_min_images: int = Field(
        default=30_000,
        ge=0,
        description=(
            "'auto' compiles runs with at least this many images to do: ~1 min of compiling per size bucket "
            "(H100), against 1.9-3.7 ms saved per 1024 px image, breaks even at 16-32k images per bucket "
            "(docs/benchmarks.md)."
        ),
    )
    max_image_pixels: int = 50_000_000
    max_image_bytes: int = 64 * 1024 * 1024
    # Catalog runs at scale (tasks/stylize.py, styleops/inference/stream.py, flows/stylize_catalog.py).
    tile_size: int | None = Field(
        default=2048,
        ge=256,
        description=(
            "Images with a longer side (after max_side) over this many px run tiled, "
            "with whole-image instance-norm statistics. Empty: only after out-of-memory."
        ),
    )
    io_threads: int = Field(
        default=4, ge=1, description="Download/decode threads and encode/upload threads (each) per shard."
    )
    commit_every: int = Field(
        default=256, ge=1, description="A shard commits its manifest rows every this many images (and at its end)."
    )
    dask_address: str | None = Field(
        default=None, description="Run shards on this Dask scheduler (tcp://host:8786) instead of threads."
    )
    dask_workers: int = Field(
        default=0,
        ge=0,
        description=(
            "Run shards on a local Dask cluster of this many worker processes (0: threads in the flow's process)."
        ),
    )
    # Style-swap patch banks (tasks/banks.py, flows/build_patch_banks.py).
    bank_layer: str = Field(
        default="relu4_1",
        description="The layer whose artwork features become the patch bank (relu4_1: AdaIN's decoder decodes it; "
        "relu3_1 for the shipped VGG16 inverse network).",
    )
    bank_encoder: Literal["vgg16", "vgg19"] = Field(
        default="vgg19",
        description="The encoder of the banks: vgg19 (AdaIN's normalised VGG19, `styleops weights install`) or "
        "vgg16 (the loss network; the shipped inverse network's). A swap's bank and inverse network must share "
        "encoder and layer.",
    )
    bank_style_size: int = Field(
        default=512,
        ge=16,
        description="Artwork longer side in px before encoding (never upsized): the artwork's strokes at the "
        "photo's scale (256 suits relu3_1 banks).",
    )
    bank_max_patches: int = Field(
        default=16384,
        ge=1,
        description=(
            "Most patches per bank: beyond this, evenly spaced patches are kept (subsampled: true in the card). "
            "A bank of P patches at relu3_1 (256 channels, 3x3, fp16) costs P*256*9*2 bytes: 75 MB at 16384."
        ),
    )

    train_content: str = Field(
        default="content/", description="Prefix of the content photos the artwork sensor trains new styles on."
    )
    # Quality gate before promotion (tasks/gate.py, styleops/evaluation/quality_gate.py).
    gate_holdout: str = Field(
        default="holdout/", description="Prefix of the fixed held-out photos every candidate is scored on."
    )
    gate_max_images: int = Field(default=16, ge=1, description="Held-out photos used (the first, by key).")
    gate_size: int = Field(default=384, ge=32, description="Longer side (px) the held-out photos are stylized at.")
    gate_margin: float = Field(
        default=0.05,
        ge=0,
        description="How much worse than production (0.05 = 5%) a candidate's content or style loss may be.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # ---- derived -------------------------------------------------------------------------
    @property
    def store_dir(self) -> Path:
        """Where the embedded SeaweedFS keeps its data, credentials and pid."""
        return Path(self.home).expanduser() / "store"

    @property
    def cache_dir(self) -> Path:
        return Path(self.home).expanduser() / "cache"

    @property
    def onnx_cache_dir(self) -> Path:
        """Where the CPU backend keeps its exported graphs (`styleops.inference.onnx_backend`)."""
        return self.cache_dir / "onnx"

    def s3_connection(self) -> dict[str, Any]:
        """Endpoint and credentials: the configured ones, else the embedded store's.

        Returns a dict with keys endpoint_url (str | None), access_key, secret_key, region.
        """
        if self.endpoint_url or self.aws_access_key_id:
            return {
                "endpoint_url": self.endpoint_url,
                "access_key": self.aws_access_key_id,
                "secret_key": self.aws_secret_access_key.get_secret_value() if self.aws_secret_access_key else None,
                "region": self.region,
            }
        state = self.store_dir / "state.json"
        if state.is_file():
            info = json.loads(state.read_text())
            return {
                "endpoint_url": info["endpoint_url"],
                "access_key": info["access_key"],
                "secret_key": info["secret_key"],
                "region": self.region,
            }
        return {"endpoint_url": None, "access_key": None, "secret_key": None, "region": self.region}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached; call `get_settings.cache_clear()` after changing the env)."""
    return Settings()
