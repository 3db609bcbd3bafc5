"""Soak: catalog runs back to back for `--minutes` through the fault proxy, checking every run.

    .venv/bin/python bench/soak.py --minutes 30 --images 48 [--photos ../shared/data/train/content]

Starts its own SeaweedFS (a temp dir) behind `tests/faults/proxy.py`, uploads `--images` real
photos, imports the shipped Monet model, then runs `stylize_catalog` (threads, Prefect's
ephemeral API, metrics off) again and again, each round with a new `max_side` (so every image is
to do again) while the proxy injects, per round, one each of 500 InternalError, 503 SlowDown,
503 ServiceUnavailable, a connection reset (request and response side), a timeout, and every
fifth round a real restart of the store, at random points of the round's requests.
After each round, from the manifest: images with no row (lost), images with more than one `ok`
row (duplicates), `ok` rows whose output is missing or has other bytes, `failed` rows by class.
Prints a markdown summary (and --out JSON): rounds, images, faults by kind, lost, duplicates,
RSS at start, end and peak.

Memory, per round (issue 17): RSS, Python objects tracked by `gc`, bytes held by pyarrow's pool,
threads, and with `--tracemalloc` the Python heap; `--fixed-size` keeps max_side at 256 px (new
JPEG quality each round instead), so tensor sizes do not grow with the rounds. The summary gives
RSS after warm-up (round `--warmup`) against the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--photos", type=Path, default=ROOT / "examples" / "catalog")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fixed-size", action="store_true", help="max_side 256 every round (quality changes)")
    ap.add_argument("--tracemalloc", action="store_true", help="also record the Python heap (slower)")
    ap.add_argument("--warmup", type=int, default=10, help="rounds before the RSS baseline")
    args = ap.parse_args()
    if args.tracemalloc:
        tracemalloc.start()

    home = Path(tempfile.mkdtemp(prefix="soak-"))
    os.environ.update(
        STYLEOPS_HOME=str(home),
        STYLEOPS_BUCKET="soak-" + uuid.uuid4().hex[:8],
        STYLEOPS_DEVICE="cpu",
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    from bench_catalog import photos  # real photos as JPEGs, longer side 256 px
    from prefect.logging import disable_run_logger

    from flows.stylize_catalog import stylize_catalog
    from infra.local_store import EmbeddedStore
    from infra.memory import release_free_memory
    from infra.settings import get_settings
    from runs import context
    from runs.spec import RunSpec, StylizeParams
    from styleops.io.images import sha256_hex
    from tasks.training import import_model_task
    from tests.faults.proxy import FaultProxy, Rule

    service = EmbeddedStore(home / "store")
    info = service.start()
    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    peak = [rss_start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            peak[0] = max(peak[0], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    rng = random.Random(args.seed)
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    rounds, errors = [], []
    try:
        with FaultProxy(info.endpoint_url, store_dir=home / "store", hold_s=3.0) as proxy:
            os.environ.update(
                AWS_ENDPOINT_URL=proxy.url, AWS_ACCESS_KEY_ID=info.access_key, AWS_SECRET_ACCESS_KEY=info.secret_key
            )
            get_settings.cache_clear()
            st = context.store()
            st.ensure_bucket()
            for i, data in enumerate(photos(args.photos, args.images, 256)):
                st.put(f"catalog/soak/{i:04d}.jpg", data)
            models = ROOT / "examples" / "models"
            with disable_run_logger():
                import_model_task.fn(
                    context.PER_STYLE, "monet", str(models / "monet.safetensors"), str(models / "monet.card.json")
                )
            deadline = time.monotonic() + args.minutes * 60
            r = 0
            while time.monotonic() < deadline:
                if args.fixed_size:  # new settings each round at one size: every image to do again
                    max_side, quality = 256, 95 - r % 60
                else:
                    max_side, quality = 64 + 8 * (r % 64), 90 - r // 64
                proxy.clear()
                rules = [
                    Rule(kind, skip=rng.randrange(5, 120))
                    for kind in ("internal_error", "slow_down", "unavailable", "timeout")
                ]
                rules += [
                    Rule("reset", skip=rng.randrange(5, 120)),
                    Rule("reset", after=True, skip=rng.randrange(5, 120)),
                ]
                if r % 5 == 4:
                    rules.append(Rule("restart", skip=rng.randrange(20, 100)))
                proxy.add(*rules)
                t = time.perf_counter()
                counts: Counter[str] = Counter()
                for attempt in range(3):  # the same command again finishes what is left
                    try:
                        summary = stylize_catalog(
                            RunSpec.create(
                                catalog="soak",
                                style="monet",
                                max_side=max_side,
                                quality=quality,
                                shard_size=8,
                                metrics=False,
                                retry_failed=attempt > 0,
                            )
                        )
                    except Exception as exc:  # noqa: BLE001 - a run that fails is counted, then rerun
                        errors.append(f"round {r} attempt {attempt}: {type(exc).__name__}: {exc}"[:300])
                        summary = None
                    proxy.wait_up()
                    counts.update(proxy.counts())
                    proxy.clear()
                    if summary is not None and not summary["failed"]:
                        break
                faults.update(counts)
                check = _check(
                    context, st, sha256_hex, StylizeParams(max_side=max_side, quality=quality).hash, args.images
                )
                totals.update(check)
                rounds.append(
                    {
                        "round": r,
                        "max_side": max_side,
                        "seconds": round(time.perf_counter() - t, 1),
                        "runs": attempt + 1,
                        "faults": dict(counts),
                        **check,
                        **_memory(proc),
                    }
                )
                print(json.dumps(rounds[-1]), flush=True)
                r += 1
    finally:
        stop.set()
        service.stop()
    rss_end = proc.memory_info().rss
    gc.collect()
    trimmed = release_free_memory()
    rss_trimmed = proc.memory_info().rss
    result = {
        "minutes": args.minutes,
        "images_per_round": args.images,
        "rounds": len(rounds),
        "images_processed": totals["ok_images"],
        "faults_injected": dict(faults),
        "lost": totals["lost"],
        "duplicates": totals["duplicates"],
        "bad_outputs": totals["bad_outputs"],
        "failed_rows": totals["failed_rows"],
        "round_errors": errors,
        "rss_start_mib": round(rss_start / 2**20),
        "rss_end_mib": round(rss_end / 2**20),
        "rss_after_gc_and_malloc_trim_mib": round(rss_trimmed / 2**20) if trimmed else None,
        "rss_peak_mib": round(peak[0] / 2**20),
        **(
            {
                f"rss_after_round_{args.warmup}_mib": rounds[args.warmup]["rss_mib"],
                "rss_growth_after_warmup": round(rounds[-1]["rss_mib"] / rounds[args.warmup]["rss_mib"] - 1, 3),
            }
            if len(rounds) > args.warmup
            else {}
        ),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps({**result, "per_round": rounds}, indent=1))


def _memory(proc: psutil.Process) -> dict[str, float]:
    """Where a round's memory is: RSS, gc-tracked objects, pyarrow's pool, threads (+ Python heap)."""
    import pyarrow

    out = {
        "rss_mib": round(proc.memory_info().rss / 2**20, 1),
        "py_objects": len(gc.get_objects()),
        "arrow_mib": round(pyarrow.total_allocated_bytes() / 2**20, 1),
        "threads": proc.num_threads(),
    }
    if tracemalloc.is_tracing():
        out["py_heap_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    return out


def _check(context, st, sha256_hex, params_hash: str, n_images: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One round's rows: every image must end with exactly one ok row whose output has its bytes."""
    rows = context.manifest().read(filters=[("catalog", "=", "catalog/soak/"), ("params_hash", "=", params_hash)])
    ok = rows[rows.status == "ok"]
    per_image = ok.image_key.value_counts()
    bad = 0
    for row in ok.itertuples():
        try:
            bad += sha256_hex(st.get_bytes(row.output_key)) != row.output_sha256
        except Exception:  # noqa: BLE001 - a missing output counts as bad
            bad += 1
    return {
        "ok_images": int(per_image.size),
        "lost": n_images - int(per_image.size),
        "duplicates": int((per_image > 1).sum()),
        "bad_outputs": int(bad),
        "failed_rows": int((rows.status == "failed").sum()),
    }


if __name__ == "__main__":
    main()
