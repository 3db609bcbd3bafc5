"""End-to-end catalog throughput (object store -> object store) vs the model alone, same images, same run.

    .venv/bin/python bench/bench_catalog.py --size 512 --images 24
    .venv/bin/python bench/bench_catalog.py --size 128 --images 5000 --rss    # memory of a long shard
    .venv/bin/python bench/bench_catalog.py --method upscale --size 512 --images 8   # x4 SR: 512 -> 2048 px

Starts its own embedded SeaweedFS (a temp dir), uploads `--images` real photos (from
`--photos`, default the repo's examples; ../shared/data/train/content has 616) resized so their
longer side is `--size`, imports the shipped Monet model (`--method upscale`: the shipped x4
super-resolution model), then measures:
  model-only  the method's engine (`try_stylize`) on the already-decoded, already-resized tensors;
  end-to-end  `tasks.stylize.stylize_shard_task` (runs.shard) on one shard: download, decode, stylize, encode,
              upload with conditional puts, manifest rows committed (metrics off, as the model-only
              side measures none; `--metrics` adds them).
Both use the process's torch threads. --rss samples the resident set size every 0.5 s of the
end-to-end run and prints it at each tenth of the images. Prints markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import atexit
import io
import os
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def photos(src: Path, n: int, size: int) -> list[bytes]:
    """n JPEGs (quality 90) of real photos, longer side `size`; cycled (and mirrored) when n > available."""
    paths = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = []
    for i in range(n):
        with Image.open(paths[i % len(paths)]) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size)) if max(im.size) > size else None
            scale = size / max(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            if (i // len(paths)) % 2:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            out.append(buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--photos", type=Path, default=ROOT / "examples" / "catalog")
    ap.add_argument("--metrics", action="store_true")
    ap.add_argument("--rss", action="store_true", help="sample RSS during the end-to-end run; skip model-only")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--method", default="per-style", choices=("per-style", "upscale"))
    ap.add_argument(
        "--repeats", type=int, default=2, help="alternate model-only and end-to-end this many times; best of each"
    )
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    os.environ.update(
        STYLEOPS_HOME=str(home), STYLEOPS_BUCKET="bench-" + uuid.uuid4().hex[:8], STYLEOPS_DEVICE=args.device
    )
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(var, None)
    from prefect.logging import disable_run_logger

    from infra.local_store import EmbeddedStore, ensure_embedded_store
    from infra.settings import get_settings
    from runs import context, methods
    from runs.shard import ShardJob
    from runs.spec import StylizeParams
    from styleops.io.images import decode_image
    from tasks.stylize import stylize_shard_task
    from tasks.training import import_model_task

    ensure_embedded_store(get_settings())
    atexit.register(EmbeddedStore(get_settings().store_dir).stop)  # its own store: stopped at the end
    get_settings.cache_clear()
    st = context.store()
    st.ensure_bucket()
    data = photos(args.photos, args.images, args.size)
    items = []
    for i, d in enumerate(data):
        put = st.put(f"catalog/bench/{i:05d}.jpg", d)
        items.append((f"catalog/bench/{i:05d}.jpg", put.etag, len(d)))
    models = ROOT / "examples" / "models"
    family, style = (context.SUPER_RESOLUTION, "x4") if args.method == "upscale" else (context.PER_STYLE, "monet")
    with disable_run_logger():
        import_model_task.fn(family, style, str(models / f"{style}.safetensors"), str(models / f"{style}.card.json"))
    params = StylizeParams(method=args.method, max_side=args.size)
    source = methods.resolve(args.method, style, "v0001").source
    device = get_settings().device
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}"
    )

    rows = []
    engine = prepared = None
    if not args.rss:
        built = methods.get(args.method).build(
            source,
            params,
            torch.device(
                "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
            ),
            get_settings(),
        )
        engine = built.engine
        prepared = [engine.prepare(decode_image(d).pixels) for d in data]
        engine.try_stylize(prepared[:1])  # warm-up

    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        proc = psutil.Process()
        while not stop.is_set():
            samples.append((time.perf_counter(), proc.memory_info().rss))
            stop.wait(0.5)

    model_s = e2e_s = float("inf")
    for r in range(1 if args.rss else args.repeats):
        if engine is not None:
            t = time.perf_counter()
            engine.try_stylize(prepared)
            model_s = min(model_s, time.perf_counter() - t)
        sampler = threading.Thread(target=sample, daemon=True)
        if args.rss:
            sampler.start()
        t = time.perf_counter()
        with disable_run_logger():
            job = ShardJob(
                f"bench-s{r:04d}",
                items,
                f"bench-{r}",
                "catalog/bench/",
                style,
                "v0001",
                params,
                metrics=args.metrics,
                source=source,
            )
            counts = stylize_shard_task.fn(job)
        e2e_s = min(e2e_s, time.perf_counter() - t)
        stop.set()
        assert counts == {"ok": args.images, "failed": 0}, counts
    if engine is not None:
        rows.append(("model-only (decoded tensors)", args.images / model_s))
    rows.append((f"end-to-end (store -> store{', metrics' if args.metrics else ''})", args.images / e2e_s))

    print(f"\n{machine}; {args.method} {style}; {args.images} photos, longer side {args.size} px\n")
    print("| variant | images/s | vs model-only |\n|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.2f} | {rate / rows[0][1]:.0%} |" if len(rows) > 1 else f"| {name} | {rate:.2f} | - |")
    if args.rss:
        print(f"\nRSS during the run ({args.images} images, {e2e_s:.0f} s):")
        t0, peak = samples[0][0], 0
        for k in range(11):
            at = t0 + e2e_s * k / 10
            rss = max((r for ts, r in samples if ts <= at), default=samples[0][1])
            peak = max(peak, rss)
            print(f"  {k * 10:3d}%: peak so far {rss / 2**20:,.0f} MiB")
        print(
            f"  start {samples[0][1] / 2**20:,.0f} MiB, end {samples[-1][1] / 2**20:,.0f} MiB, "
            f"peak {max(r for _, r in samples) / 2**20:,.0f} MiB"
        )


if __name__ == "__main__":
    main()
