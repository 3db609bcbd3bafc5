"""Catalog stylization tasks: plan what is left to do, stylize a shard, record its manifest rows."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from prefect import task
from prefect.runtime import flow_run, task_run

from infra.progress import progress
from infra.settings import get_settings
from infra.store import GetResult, ObjectNotFoundError, ObjectStore, ObjectTooLargeError, PreconditionFailedError, PutResult, StoreError, validate_key
from infra.version import code_version
from styleops.errors import ImageError, ImageTooLargeError, InvalidInputError
from styleops.imageio import content_type, sha256_hex, to_float
from styleops.metrics import StyleMetrics
from styleops.device import resolve_device
from styleops.pipeline import Job, StreamStylizer
from tasks import common, stylizers
from tasks.stylizers import Conditioned, blend_label, checked_blend, parse_blend  # noqa: F401 (re-exported)

@dataclass(frozen=True)
class StylizeParams:
    """Everything besides the model that changes an output's bytes (hashed into params_hash).

    Only the fields that apply are hashed (colour when not 'none', alpha for AdaIN, the optimizer
    settings for Gatys), so adding options never changes the hash of existing runs.
    """

    method: str = "per-style"  # per-style | multi-style | swap | adain | gatys
    max_side: int | None = 1024
    format: str = "jpeg"
    quality: int = 90
    color: str = "none"  # none | luminance | histogram (styleops.color.preserve_colors)
    alpha: float = 1.0  # adain: 1 = full style, 0 = the decoded photo
    iterations: int = 300  # gatys: optimizer iterations per level
    optimizer: str = "lbfgs"  # gatys: lbfgs | adam
    levels: int = 1  # gatys: coarse-to-fine levels (1 = the output size only)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "max_side": self.max_side, "format": self.format, "quality": self.quality}
        if self.color != "none":
            d["color"] = self.color
        if self.method == "adain":
            d["alpha"] = self.alpha
        if self.method == "gatys":
            d.update(iterations=self.iterations, optimizer=self.optimizer, levels=self.levels)
        return d

    @property
    def hash(self) -> str:
        return common.stable_hash(self.to_dict())


def catalog_prefix(catalog: str) -> str:
    """`demo`, `catalog/demo` or `catalog/demo/` -> `catalog/demo/`."""
    name = catalog.strip("/")
    name = "" if name == "catalog" else name.removeprefix("catalog/")  # "catalog/" is the root, not a set
    if not name or "/" in name:
        raise ValueError(f"a catalog is a set name under catalog/, e.g. 'shop' for catalog/shop/; got {catalog!r}")
    validate_key(name)  # InvalidKeyError (a ValueError) for '.', '..', backslashes, control characters
    return f"catalog/{name}/"


def output_prefix(catalog: str, style: str, model_version: str, params: StylizeParams) -> str:
    """stylized/<set>/<style>/<model_version>/<params_hash[:8]>/: where one run's outputs go (and
    the only prefix its shards may write). A blend label's '=' and ',' become '-' and '+'; a
    multi-style version is '<name>/<version>'."""
    style = style.replace("=", "-").replace(",", "+")
    return f"stylized/{catalog_prefix(catalog).split('/')[1]}/{style}/{model_version}/{params.hash[:8]}/"


def output_key(image_key: str, catalog: str, style: str, model_version: str, params: StylizeParams) -> str:
    """`output_prefix` + the image's path in its set, the output format's extension appended unless
    the path already has it (`a.png` -> `a.png.jpg`, so `a.png` and `a.jpg` never collide)."""
    prefix = catalog_prefix(catalog)
    rel = image_key[len(prefix) :]
    ext = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}[params.format]
    if PurePosixPath(rel).suffix.lower() != ext:
        rel += ext
    return output_prefix(catalog, style, model_version, params) + rel


@task(name="plan-catalog")
def plan_catalog_task(catalog: str, style: str, model_version: str, params_hash: str, shard_size: int, retry_failed: bool = False, still_current: tuple[str, ...] | list[str] = (), repair: bool = False) -> dict[str, Any]:
    """List the catalog, drop images already `ok` for this style/model/params with the same etag
    (or `ok` for a version in `still_current`, whose outputs are bit-identical), and, unless
    `retry_failed`, those that failed for good (undecodable or too large); cut the rest into
    shards of `shard_size` [(key, etag, size), ...]. "stale" counts the images to do that have
    an `ok` output from another model version (what a promotion makes the next run redo).

    With `repair`, the outputs of the images it would skip as done are checked as the audit
    checks them (downloaded, size and sha256 against their latest `ok` row): the missing and
    tampered ones go back into the shards (after the rest). The plan then also has "repair"
    (their number), "missing", "tampered" and "overwrite": per shard {output_key: etag} of the
    tampered outputs of this model version, the only keys its shard may overwrite (If-Match).
    """
    prefix = catalog_prefix(catalog)
    table = common.manifest()
    which = {"catalog": prefix, "style": style, "model_version": model_version, "params_hash": params_hash}
    done: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    for version in (*reversed(tuple(still_current)), model_version):  # oldest first: newer rows win
        if repair:
            latest = table.completed_rows(**{**which, "model_version": version})
            rows.update(latest)
            done.update((key, row["input_etag"]) for key, row in latest.items())
        else:
            done.update(table.completed(**{**which, "model_version": version}))
    previous = table.ok_elsewhere(catalog=prefix, style=style, params_hash=params_hash, exclude=(model_version, *still_current))
    known_bad = {} if retry_failed else table.failed_permanently(**which)
    shards: list[list[tuple[str, str, int]]] = [[]]
    suspects: list[tuple[str, str, int]] = []  # done, but their outputs are checked first (repair)
    total = skipped_done = skipped_bad = ignored = stale = 0
    for info in common.store().list(prefix):
        if not common.is_image_key(info.key):
            ignored += 1
            continue
        total += 1
        if done.get(info.key) == info.etag:
            skipped_done += 1
            if repair:
                suspects.append((info.key, info.etag, info.size))
            continue
        if known_bad.get(info.key) == info.etag:
            skipped_bad += 1
            continue
        stale += info.key in previous
        if len(shards[-1]) >= shard_size:
            shards.append([])
        shards[-1].append((info.key, info.etag, info.size))
    if repair:
        broken, overwrite = _broken_outputs([rows[key] for key, _, _ in suspects], model_version)
        missing = sum(kind == "missing_output" for kind in broken.values())
        overwrites: list[dict[str, str]] = [{} for _ in shards]
        for item in suspects:
            if item[0] not in broken:
                continue
            skipped_done -= 1
            if len(shards[-1]) >= shard_size:
                shards.append([])
                overwrites.append({})
            shards[-1].append(item)
            if item[0] in overwrite:
                overwrites[-1].update([overwrite[item[0]]])
        overwrites = [o for o, s in zip(overwrites, shards, strict=True) if s]
    shards = [s for s in shards if s]
    todo = total - skipped_done - skipped_bad
    common.logger().info("catalog %s: %d images, %d already done, %d known bad, %d to do (%d stale: made by another model version) in %d shards (%d non-image keys ignored)", prefix, total, skipped_done, skipped_bad, todo, stale, len(shards), ignored)
    plan = {"catalog": prefix, "total": total, "done": skipped_done, "known_bad": skipped_bad, "todo": todo, "stale": stale, "ignored": ignored, "shards": shards}
    if repair:
        common.logger().info("repair: %d of the %d done outputs checked are to re-render: %d missing, %d tampered (%d overwritten if unchanged since)", len(broken), len(suspects), missing, len(broken) - missing, len(overwrite))
        plan.update(repair=len(broken), missing=missing, tampered=len(broken) - missing, overwrite=overwrites)
    return plan


def _broken_outputs(rows: list[dict[str, Any]], model_version: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Check the outputs of `ok` rows as the audit does: {image_key: "missing_output" |
    "tampered_output"} of the broken ones, and {image_key: (output_key, etag)} of the tampered
    ones of `model_version` (an older, still-current version's output is not this run's to
    overwrite: its re-render goes to this version's key)."""
    from tasks.audit import inspect_outputs  # tasks.audit imports this module

    broken: dict[str, str] = {}
    overwrite: dict[str, tuple[str, str]] = {}
    for row, (found, etag) in zip(rows, inspect_outputs(common.store(), rows), strict=True):
        if found is None:
            continue
        broken[row["image_key"]] = found["kind"]
        if found["kind"] == "tampered_output" and etag is not None and row["model_version"] == model_version:
            overwrite[row["image_key"]] = (row["output_key"], etag)
    return broken, overwrite


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


def _download(st: ObjectStore, f: Fetched, max_bytes: int) -> bytes:
    """One catalog image's bytes (in a pipeline thread); sets its sha256.

    A traversal key from a listing is refused before anything else. An object whose listed size
    is over max_bytes is refused without any request (ImageTooLargeError, as decode_image words
    it), and one that grew past it since the listing is refused from its Content-Length, before
    its body is read. Pixel dimensions are never a refusal below the pixel cap: a 1x1 or 1x4000
    image is stylized and measured (styleops.metrics and styleops.gatys pad what is too small
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


@task(name="stylize-shard", tags=["gpu"], retries=2, retry_delay_seconds=5)
def stylize_shard_task(shard_id: str, items: list[tuple[str, str, int]], run_id: str, catalog: str, style: str, model_version: str, params: dict[str, Any], batch_size: int | None = None, metrics: bool = True, source: dict[str, Any] | None = None, overwrite: dict[str, str] | None = None) -> dict[str, int]:
    """Stylize one shard and append its rows to the manifest in one commit; returns status counts.

    `source`: what `tasks.stylizers.resolve` found to load (default: the per-style or multi-style
    model named by `style` and `model_version`). A bad image becomes a `failed` row with its
    reason; the shard goes on. Outputs are written with a conditional put: an existing output
    with the same bytes is accepted, different bytes are never overwritten, except this
    pipeline's own output for the same image key made from other input bytes (the catalog image
    changed), which is replaced with If-Match.

    `overwrite` (a repair, see plan_catalog_task): {output_key: etag} of tampered outputs to
    overwrite with If-Match on that etag; a key changed since is left alone (output_conflict
    unless it now holds the same bytes).
    """
    settings = get_settings()
    p = StylizeParams(**params)
    st = common.store(writable=(output_prefix(catalog, style, model_version, p),))  # this run's outputs only
    source = source or _default_source(p.method, style, model_version)
    device = resolve_device(settings.device)
    iter_bar = f"gatys:{style}:{shard_id}"

    def on_iteration(i: int, loss: float) -> None:
        if i == 1:
            progress().start(iter_bar, f"gatys {style} {shard_id} image", p.iterations * p.levels)
        progress().advance(iter_bar, 1, description=f"gatys {style} loss {loss:,.0f}")

    built = stylizers.build(p.method, style, source, params=p, device=device, settings=settings, batch_size=batch_size, on_iteration=on_iteration)
    engine = built.engine
    meter = None
    if metrics:
        art, _ = common.artwork_pixels(st, built.metrics_artwork_key, settings)
        meter = StyleMetrics(common.encoder(built.metrics_weights.layers, device, settings), to_float(art), built.metrics_weights, style_size=built.metrics_style_size)
    base = {
        "run_id": run_id, "flow_run_id": str(flow_run.get_id() or ""), "shard_id": shard_id, "attempt": int(task_run.get_run_count() or 1),
        "catalog": catalog_prefix(catalog), "style": style, "method": p.method, "model_version": model_version,
        "model_sha256": built.model_sha256, "params_hash": p.hash, "device": str(device),
        "worker": f"{socket.gethostname()}:{os.getpid()}", "code_version": code_version(),
        "params_json": json.dumps({**p.to_dict(), "inputs": built.lineage}, sort_keys=True),
    }
    limits = (settings.max_image_pixels, settings.max_image_bytes)
    stream = StreamStylizer(
        engine, load=lambda f: _download(st, f, limits[1]), write=lambda job: _write(st, base, job, p, overwrite or {}),
        fmt=p.format, quality=p.quality, measure=meter.measure if meter else None, limits=limits,
        expected_errors=(StoreError, InvalidInputError), threads=settings.io_threads,
    )
    bar = f"stylize:{style}:{shard_id}"
    progress().start(bar, f"stylize {style} {shard_id}", len(items))
    table = common.manifest()
    # An earlier attempt of this shard (a Dask worker killed after its commit, a Prefect retry)
    # may have recorded some images already: those are not redone, so no image gets two rows.
    recorded = set(table.read_arrow(filters=[("run_id", "=", run_id), ("shard_id", "=", shard_id), ("status", "=", "ok")], columns=["image_key"]).column("image_key").to_pylist()) if table.exists() else set()
    counts = {"ok": len(recorded), "failed": 0}
    rows: list[dict[str, Any]] = []
    for row in stream.run(Fetched(*item) for item in items if item[0] not in recorded):
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
    common.logger().info("shard %s: %d ok, %d failed (%d batches, %d decoded / %d encoded on the GPU, device busy %.1f of %.1f s)", shard_id, counts["ok"], counts["failed"], stream.stats.batches, stream.stats.gpu_decoded, stream.stats.gpu_encoded, stream.stats.device_s, stream.stats.wall_s)
    return counts


def _default_source(method: str, style: str, model_version: str) -> dict[str, Any]:
    """The `source` of a per-style ('v0003') or multi-style ('<name>/v0002', blend label) run."""
    if method not in ("per-style", "multi-style"):
        raise InvalidInputError(f"method {method!r} needs the source resolved by tasks.stylizers.resolve")
    name, _, version = model_version.rpartition("/")
    return stylizers.resolve(method, style, version, name or None).source


def _write(st: ObjectStore, base: dict[str, Any], job: Job[Fetched], p: StylizeParams, overwrite: dict[str, str]) -> dict[str, Any]:
    """Write one output (never overwriting different bytes, but our own stale one or a tampered one
    in `overwrite`) and return its manifest row; a job that failed before gets its `failed` row
    (in a pipeline thread)."""
    f = job.item
    row: dict[str, Any] = {**base, "image_key": f.key, "input_etag": f.etag, "input_sha256": f.sha256, "bytes_in": f.size, "started_at": f.started_at}
    if job.in_size is not None:
        row.update(height=job.in_size[0], width=job.in_size[1])
    if job.error is None:
        assert job.encoded is not None and job.out_size is not None
        out_key = output_key(f.key, base["catalog"], base["style"], base["model_version"], p)
        row.update(output_key=out_key, out_height=job.out_size[0], out_width=job.out_size[1], content_loss=job.losses[0], style_loss=job.losses[1])
        meta = {"source-key": _ascii(f.key), "source-sha256": str(f.sha256), "model-version": base["model_version"]}
        try:
            row.update(_write_output(st, out_key, job.encoded, p, meta, overwrite.get(out_key)))
        except StoreError as exc:  # also when reading the existing object fails
            row.update(status="failed", error_class="store_error", error=str(exc)[:500])
    else:
        error_class = job.error.error_class if isinstance(job.error, ImageError) else "store_error" if isinstance(job.error, StoreError) else "invalid_input"
        row.update(status="failed", error_class=error_class, error=str(job.error)[:500])
    row.update(duration_ms=(time.perf_counter() - job.t0) * 1e3, finished_at=datetime.now(UTC))
    return row


def _write_output(st: ObjectStore, out_key: str, data: bytes, p: StylizeParams, meta: dict[str, str], replace_etag: str | None = None) -> dict[str, Any]:
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
    return {"status": "failed", "output_sha256": existing.sha256, "bytes_out": existing.size,
            "error_class": "output_conflict", "error": f"{out_key} exists with different bytes; not overwritten"}


def _replace_stale(st: ObjectStore, existing: GetResult, data: bytes, p: StylizeParams, meta: dict[str, str]) -> PutResult | None:
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
