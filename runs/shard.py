"""The work of one shard: download each image, stylize it with the run's method, write its output
with a conditional put, and record one manifest row per image."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from infra.memory import release_free_memory
from infra.progress import progress
from infra.settings import Settings, get_settings
from infra.store import (
    GetResult,
    ObjectNotFoundError,
    ObjectStore,
    ObjectTooLargeError,
    PreconditionFailedError,
    PutResult,
    StoreError,
    validate_key,
)
from infra.version import code_version
from runs import context, methods
from runs.keys import catalog_prefix, output_key, output_prefix
from runs.methods.base import Source, missing_metrics_artwork
from runs.methods.upscale import load_upscaler, upscaler_source
from runs.plan import Item
from runs.spec import StylizeParams
from styleops.device import resolve_device
from styleops.errors import ImageError, ImageTooLargeError, InvalidInputError
from styleops.evaluation.metrics import StyleMetrics, in_sample
from styleops.inference.onnx_backend import OnnxRuntimeEncoder
from styleops.inference.stream import Job, Measure, StreamStylizer
from styleops.inference.upscale import Upscaled, UpscaleEngine
from styleops.io.images import content_type, sha256_hex, to_float


@dataclass
class Fetched:
    """One catalog image: what the listing said, and what its download found."""

    key: str
    etag: str
    size: int
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    sha256: str | None = None


def _over_byte_cap(size: int, max_bytes: int) -> ImageTooLargeError:
    """The error (and message) `decode_image` gives for bytes over its cap, from a size alone."""
    return ImageTooLargeError(f"file is {size} bytes, over the limit of {max_bytes} bytes")


def download_item(st: ObjectStore, f: Fetched, max_bytes: int) -> bytes:
    """One catalog image's bytes (in a pipeline thread); sets its sha256.

    A traversal key from a listing is refused before anything else. An object whose listed size
    is over max_bytes is refused without any request (ImageTooLargeError, as decode_image words
    it), and one that grew past it since the listing is refused from its Content-Length, before
    its body is read. Pixel dimensions are never a refusal below the pixel cap: a 1x1 or 1x4000
    image is stylized and measured (styleops.evaluation.metrics and styleops.inference.gatys pad what is too small
    for the loss network).
    """
    validate_key(f.key)
    if f.size > max_bytes:
        raise _over_byte_cap(f.size, max_bytes)
    try:
        got = st.get(f.key, max_bytes=max_bytes)
    except ObjectTooLargeError as exc:
        raise _over_byte_cap(exc.size, exc.max_bytes) from exc
    f.sha256 = got.sha256
    return got.data


@dataclass(frozen=True)
class ShardJob:
    """One shard of a run: its items and everything a worker needs to stylize and record them.
    Built once per shard by the stylize-catalog flow, it is the shard task's one argument and
    reaches `stylize_shard` unchanged (pickled, to a Dask worker)."""

    shard_id: str
    items: list[Item]
    run_id: str
    catalog: str
    style: str
    model_version: str
    params: StylizeParams
    batch_size: int | None = None
    metrics: bool = True
    source: Source | None = None  # None: the per-style or multi-style model named by style and model_version
    overwrite: dict[str, str] = field(default_factory=dict)  # a repair: {output_key: etag} it may overwrite (If-Match)
    run_images: int = 0  # images the whole run has to do (0: this shard's own), for settings.compile = 'auto'
    metrics_sample: float = 1.0  # the share of images measured, picked by key (`in_sample`)


def stylize_shard(
    job: ShardJob, *, flow_run_id: str = "", attempt: int = 1, log: context.Logger = context.log
) -> dict[str, Any]:
    """Stylize one shard and append its rows to the manifest (in commits of settings.commit_every
    rows); returns status counts. `flow_run_id` and `attempt` (the orchestrator's) go into the rows.

    `job.source`: what the method's `resolve` found to load (default: the method's `source_for`
    the style and model version). A bad image becomes a `failed` row with its reason; the shard
    goes on. Outputs are written with a conditional put: an existing output with the same bytes
    is accepted, different bytes are never overwritten, except this pipeline's own output for
    the same image key made from other input bytes (the catalog image changed), which is
    replaced with If-Match.

    `job.overwrite` (a repair, see runs.plan): {output_key: etag} of tampered outputs to
    overwrite with If-Match on that etag; a key changed since is left alone (output_conflict
    unless it now holds the same bytes).
    """
    p = job.params
    settings = get_settings()
    outputs = output_prefix(job.catalog, job.style, job.model_version, p)
    st = context.store(writable=(outputs,))  # this run's outputs only
    method = methods.get(p.method)
    source = job.source or method.source_for(job.style, job.model_version)
    device = resolve_device(settings.device)
    settings = settings.model_copy(
        update={"compile": should_compile(settings, device, max(job.run_images, len(job.items)))}
    )
    iter_bar = f"{method.name}:{job.style}:{job.shard_id}"

    def on_iteration(i: int, loss: float) -> None:  # optimization methods (gatys): per image
        if i == 1:
            progress().start(iter_bar, f"{method.name} {job.style} {job.shard_id} image", method.steps_per_image(p))
        progress().advance(iter_bar, 1, description=f"{method.name} {job.style} loss {loss:,.0f}")

    built = method.build(source, p, device, settings, job.batch_size, on_iteration)
    engine, lineage = built.engine, built.lineage
    if p.upscale is not None:  # super-resolution after the method: one output, both models' lineage
        sr_net, sr_card = load_upscaler(upscaler_source(p.upscale))
        engine = Upscaled(engine, UpscaleEngine(sr_net, device=device, max_output_pixels=settings.max_image_pixels))
        lineage = {**lineage, "upscale": {"model": p.upscale, "model_sha256": sr_card["weights_sha256"]}}
    backend = getattr(built.engine, "backend", "torch")
    if backend != "torch":  # recorded where it is not torch: torch rows stay as they were
        lineage = {**lineage, "backend": backend}
    measure = None
    if job.metrics and built.metrics_artwork_key is not None:
        try:
            art, _ = context.artwork_pixels(st, built.metrics_artwork_key, settings)
        except ObjectNotFoundError:
            raise missing_metrics_artwork(built.metrics_artwork_key) from None
        encoder = context.encoder(built.metrics_weights.layers, device, settings)
        if backend == "onnxruntime":  # the metrics run where the net ran: the lineage names both
            encoder = OnnxRuntimeEncoder(encoder, settings.onnx_cache_dir)
        meter = StyleMetrics(
            encoder,
            to_float(art),
            built.metrics_weights,
            style_size=built.metrics_style_size,
        )
        measure = meter.measure if p.upscale is None else _at_input_size(meter)
        if job.metrics_sample < 1.0:  # recorded where it is not 1: rows of full runs stay as they were
            lineage = {**lineage, "metrics_sample": job.metrics_sample}
    base = {
        "run_id": job.run_id,
        "flow_run_id": flow_run_id,
        "shard_id": job.shard_id,
        "attempt": attempt,
        "catalog": catalog_prefix(job.catalog),
        "style": job.style,
        "method": p.method,
        "model_version": job.model_version,
        "model_sha256": built.model_sha256,
        "params_hash": p.hash,
        "device": str(device),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "code_version": code_version(),
        "params_json": json.dumps({**p.to_dict(), "inputs": lineage}, sort_keys=True),
    }
    limits = (settings.max_image_pixels, settings.max_image_bytes)
    stream = StreamStylizer(
        engine,
        load=lambda f: download_item(st, f, limits[1]),
        write=lambda done: write_row(st, base, done, p, job.overwrite),
        fmt=p.format,
        quality=p.quality,
        measure=measure,
        measured=(lambda f: in_sample(f.key, job.metrics_sample)) if job.metrics_sample < 1.0 else None,
        limits=limits,
        expected_errors=(StoreError, InvalidInputError),
        threads=settings.io_threads,
    )
    bar = f"stylize:{job.style}:{job.shard_id}"
    progress().start(bar, f"stylize {job.style} {job.shard_id}", len(job.items))
    table = context.manifest()
    # An earlier attempt of this shard (a Dask worker killed after its commit, a Prefect retry)
    # may have recorded some images already: those are not redone, so no image gets two rows.
    recorded = (
        set(
            table.read_arrow(
                filters=[("run_id", "=", job.run_id), ("shard_id", "=", job.shard_id), ("status", "=", "ok")],
                columns=["image_key"],
            )
            .column("image_key")
            .to_pylist()
        )
        if table.exists()
        else set()
    )
    counts: dict[str, Any] = {"ok": len(recorded), "failed": 0}
    rows: list[dict[str, Any]] = []
    for row in stream.run(Fetched(*item) for item in job.items if item[0] not in recorded):
        rows.append(row)
        counts[row["status"]] += 1
        progress().advance(bar, 1)
        if len(rows) >= settings.commit_every:  # a long shard commits as it goes: a kill loses at most this many rows
            table.append(rows)
            rows = []
    if rows:
        table.append(rows)
    progress().finish(bar)
    progress().finish(iter_bar)
    release_free_memory()  # the shard's freed image buffers, back to the OS (infra.memory)
    compile_s = getattr(built.engine, "compile_s", 0.0)
    if compile_s:  # only where it compiled: {"ok", "failed"} otherwise
        counts["compile_s"] = round(compile_s, 3)
    log.info(
        "shard %s: %d ok, %d failed (%d batches, %d decoded / %d encoded on the GPU, device busy %.1f of %.1f s%s)",
        job.shard_id,
        counts["ok"],
        counts["failed"],
        stream.stats.batches,
        stream.stats.gpu_decoded,
        stream.stats.gpu_encoded,
        stream.stats.device_s,
        stream.stats.wall_s,
        f", {compile_s:.1f} s of it compiling" if compile_s else "",
    )
    return counts


def should_compile(settings: Settings, device: torch.device, run_images: int) -> bool:
    """`torch.compile` the feed-forward nets of a run of `run_images` images: only on CUDA; always
    with settings.compile true, never with false, and with 'auto' when the run has at least
    settings.compile_min_images images (the compile costs seconds per size bucket)."""
    if device.type != "cuda" or settings.compile is False:
        return False
    return settings.compile is True or run_images >= settings.compile_min_images


def _at_input_size(meter: StyleMetrics) -> Measure:
    """`meter.measure` of an upscaled output, shrunk back to its input's size (antialiased): the
    losses of an upscaled run compare with the same stylization's without --upscale."""

    def measure(content: Tensor, output: Tensor) -> tuple[float, float]:
        small = F.interpolate(output[None], size=content.shape[-2:], mode="bilinear", antialias=True)[0]
        return meter.measure(content, small.clamp(0, 1))

    return measure


def write_row(
    st: ObjectStore, base: dict[str, Any], job: Job[Fetched], p: StylizeParams, overwrite: dict[str, str] | None = None
) -> dict[str, Any]:
    """Write one output (never overwriting different bytes, but our own stale one or a tampered one
    in `overwrite`) and return its manifest row; a job that failed before gets its `failed` row
    (in a pipeline thread)."""
    f = job.item
    row: dict[str, Any] = {
        **base,
        "image_key": f.key,
        "input_etag": f.etag,
        "input_sha256": f.sha256,
        "bytes_in": f.size,
        "started_at": f.started_at,
    }
    if job.in_size is not None:
        row.update(height=job.in_size[0], width=job.in_size[1])
    if job.error is None:
        assert job.encoded is not None and job.out_size is not None
        out_key = output_key(f.key, base["catalog"], base["style"], base["model_version"], p)
        row.update(
            output_key=out_key,
            out_height=job.out_size[0],
            out_width=job.out_size[1],
            content_loss=job.losses[0],
            style_loss=job.losses[1],
        )
        meta = {"source-key": _ascii(f.key), "source-sha256": str(f.sha256), "model-version": base["model_version"]}
        try:
            row.update(_write_output(st, out_key, job.encoded, p, meta, (overwrite or {}).get(out_key)))
        except StoreError as exc:  # also when reading the existing object fails
            row.update(status="failed", error_class="store_error", error=str(exc)[:500])
    else:
        error_class = (
            job.error.error_class
            if isinstance(job.error, ImageError)
            else "store_error"
            if isinstance(job.error, StoreError)
            else "invalid_input"
        )
        row.update(status="failed", error_class=error_class, error=str(job.error)[:500])
    row.update(duration_ms=(time.perf_counter() - job.t0) * 1e3, finished_at=datetime.now(UTC))
    return row


def _write_output(
    st: ObjectStore, out_key: str, data: bytes, p: StylizeParams, meta: dict[str, str], replace_etag: str | None = None
) -> dict[str, Any]:
    """Conditional put of one output; the status/sha/size fields of its manifest row.

    `replace_etag` (a repair): overwrite the object only while it still has that etag. If it
    changed or went since, it is written as any output is (If-None-Match), but never replaced."""
    if replace_etag is not None:
        try:
            put = st.put(out_key, data, content_type=content_type(p.format), if_match=replace_etag, metadata=meta)
            return {"status": "ok", "output_sha256": put.sha256, "bytes_out": put.size}
        except (PreconditionFailedError, ObjectNotFoundError):
            pass
    try:
        put = st.put(out_key, data, content_type=content_type(p.format), if_none_match=True, metadata=meta)
        return {"status": "ok", "output_sha256": put.sha256, "bytes_out": put.size}
    except PreconditionFailedError:
        existing = st.get(out_key)
    if existing.sha256 == sha256_hex(data):
        return {"status": "ok", "output_sha256": existing.sha256, "bytes_out": existing.size}
    replaced = _replace_stale(st, existing, data, p, meta) if replace_etag is None else None
    if replaced is not None:
        return {"status": "ok", "output_sha256": replaced.sha256, "bytes_out": replaced.size}
    return {
        "status": "failed",
        "output_sha256": existing.sha256,
        "bytes_out": existing.size,
        "error_class": "output_conflict",
        "error": f"{out_key} exists with different bytes; not overwritten",
    }


def _replace_stale(
    st: ObjectStore, existing: GetResult, data: bytes, p: StylizeParams, meta: dict[str, str]
) -> PutResult | None:
    """Replace `existing` when it is this pipeline's output for the same source key made from other
    input bytes (the catalog image changed since); None, touching nothing, for anything else
    (no such metadata: someone else's object) or when it changed meanwhile (If-Match)."""
    recorded = existing.metadata.get("source-sha256")
    if existing.metadata.get("source-key") != meta["source-key"] or recorded in (None, meta["source-sha256"]):
        return None
    try:
        return st.put(existing.key, data, content_type=content_type(p.format), if_match=existing.etag, metadata=meta)
    except PreconditionFailedError:
        return None


def _ascii(text: str) -> str:
    """S3 user metadata must be ASCII: escape the rest."""
    return text.encode("ascii", "backslashreplace").decode()
