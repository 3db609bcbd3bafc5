"""GPU throughput of the per-style network at 1024 px: model alone vs JPEG bytes -> JPEG bytes.

Run by hand on a CUDA machine (results in docs/benchmarks.md):
    python bench/bench_gpu_pipeline.py --images 512 --batch 16

Modes, each on the same images (the example catalog upscaled to 1024 px on the longer side,
JPEG q90, repeated to --images):
  model      decoded uint8 tensors already on the GPU -> float -> net -> clamp (the model alone)
  cpu-decode bytes -> torchvision.io.decode_jpeg on CPU threads (prefetched) -> pinned memory ->
             non_blocking copy -> net -> encode_jpeg on the GPU -> bytes on the host
  gpu-decode bytes -> decode_jpeg(device="cuda") in batches (nvJPEG) -> net -> encode_jpeg on the
             GPU -> bytes on the host
  pipeline   the production shard pipeline (styleops.inference.stream.StreamStylizer around
             styleops.inference.engine.InferenceEngine: load/decode threads, size buckets, device stage,
             encode/write threads), bytes in memory -> bytes in memory; --gpu-codec on/off
No object store here (SeaweedFS's binary is too big to carry to the GPU machine): this isolates
decode/encode and device feeding from network I/O.
Nets: the shipped example `monet` (16 channels) and Johnson's 32-channel architecture (random weights,
same speed as trained ones).
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

ROOT = Path(__file__).resolve().parents[1]


MEMORY_FORMAT = torch.channels_last
VARIANTS: list[str] = []  # --variants: run only the pipeline variants whose names contain one of these
DTYPE = torch.float16


def load_nets(device: torch.device, compile: bool = False) -> dict[str, torch.nn.Module]:
    from styleops.io.serialize import from_safetensors
    from styleops.models.transformer import TransformerNet

    nets = {
        "monet-16ch": from_safetensors((ROOT / "examples/models/monet.safetensors").read_bytes()),
        "johnson-32ch": TransformerNet(32, 5),
    }
    nets = {k: v.eval().to(device, memory_format=MEMORY_FORMAT) for k, v in nets.items()}
    return {k: torch.compile(v, dynamic=False) for k, v in nets.items()} if compile else nets


def make_jpegs(n: int, side: int) -> list[torch.Tensor]:
    """JPEG bytes (uint8 1-D tensors) of the example photos at `side` px on the longer side."""
    from PIL import Image

    base = []
    for p in sorted((ROOT / "examples/catalog").glob("*.jpg")):
        img = Image.open(p).convert("RGB")
        scale = side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
        x = torch.from_numpy(__import__("numpy").asarray(img).copy()).permute(2, 0, 1).contiguous()
        # one orientation for all (landscape), so a batch is one size bucket
        if x.shape[1] > x.shape[2]:
            x = x.transpose(1, 2).contiguous()
        base.append(encode_jpeg(x, quality=90))
    return [base[i % len(base)] for i in range(n)]


def run_net(net: torch.nn.Module, batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] on the GPU -> uint8 [N,3,H,W] on the GPU (fp16 autocast, channels_last)."""
    x = batch_u8.to(memory_format=MEMORY_FORMAT).float().div_(255)
    with torch.autocast("cuda", dtype=DTYPE):
        y = net(x)
    return y.float().clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def timed(fn, n_images: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "seconds": round(dt, 3),
        "images_per_s": round(n_images / dt, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
    }


def bench(
    net: torch.nn.Module, jpegs: list[torch.Tensor], batch: int, threads: int, model_only_: bool = False
) -> dict[str, dict[str, float]]:
    dev = torch.device("cuda")
    decoded_gpu = [decode_jpeg(j).to(dev) for j in jpegs]
    batches = [list(range(i, min(i + batch, len(jpegs)))) for i in range(0, len(jpegs), batch)]
    out: dict[str, dict[str, float]] = {}

    def model_only() -> None:
        for b in batches:
            run_net(net, torch.stack([decoded_gpu[i] for i in b]))

    out["model"] = timed(model_only, len(jpegs))
    if model_only_:
        return out

    def encode_and_fetch(y: torch.Tensor) -> list[bytes]:
        encoded = encode_jpeg(list(y), quality=90)  # on the GPU (nvJPEG)
        return [e.cpu().numpy().tobytes() for e in encoded]

    def cpu_decode() -> None:
        q: queue.Queue = queue.Queue(maxsize=4)  # bounded: memory stays flat

        def producer() -> None:
            with ThreadPoolExecutor(threads) as pool:
                for b in batches:
                    imgs = list(pool.map(lambda i: decode_jpeg(jpegs[i]), b))
                    q.put(torch.stack(imgs).pin_memory())
            q.put(None)

        threading.Thread(target=producer, daemon=True).start()
        while (host := q.get()) is not None:
            encode_and_fetch(run_net(net, host.to(dev, non_blocking=True)))

    out["cpu-decode"] = timed(cpu_decode, len(jpegs))

    def gpu_decode() -> None:
        for b in batches:
            imgs = decode_jpeg([jpegs[i] for i in b], device=dev)  # batched nvJPEG
            encode_and_fetch(run_net(net, torch.stack(imgs)))

    out["gpu-decode"] = timed(gpu_decode, len(jpegs))
    return out


def bench_pipeline(
    model: torch.nn.Module, jpegs: list[torch.Tensor], batch: int, threads: int, compile: bool
) -> dict[str, dict[str, float]]:
    """The production pipeline on the same images: with nvJPEG decode/encode and with CPU codecs."""
    from styleops.inference.engine import InferenceEngine
    from styleops.inference.stream import StreamStylizer

    data = [j.numpy().tobytes() for j in jpegs]
    out: dict[str, dict[str, float]] = {}
    engine = InferenceEngine(
        model,
        device="cuda",
        batch_size=batch,
        max_side=None,
        compile=compile,
        precision="fp16" if DTYPE == torch.float16 else "bf16",
    )

    def turbo(y: torch.Tensor) -> bytes:  # libjpeg-turbo through torchvision, GIL released
        return (
            encode_jpeg(y if y.dtype == torch.uint8 else y.mul(255).round_().clamp_(0, 255).to(torch.uint8), quality=90)
            .numpy()
            .tobytes()
        )

    def turbo_decode(data: bytes) -> torch.Tensor:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)

    variants = {
        "pipeline turbo-decode turbo-encode (CPU threads)": dict(
            gpu_codec=False, encoder=turbo, jpeg_decoder=turbo_decode
        ),
        "pipeline gpu-decode gpu-encode": dict(gpu_codec=True),
        "pipeline gpu-decode turbo-encode": dict(gpu_codec=True, gpu_encode=False, encoder=turbo),
        "pipeline gpu-decode pillow-encode": dict(gpu_codec=True, gpu_encode=False),
        "pipeline cpu-codec (pillow)": dict(gpu_codec=False),
    }
    for name, kw in variants.items():
        if VARIANTS and not any(v in name for v in VARIANTS):
            continue
        stream = StreamStylizer(
            engine,
            load=lambda i: data[i],
            write=lambda job: len(job.encoded or b""),
            limits=(50_000_000, 64 * 2**20),
            threads=threads,
            depth=4 * batch,
            **kw,
        )

        def run(stream: StreamStylizer = stream) -> None:
            written = list(stream.run(range(len(data))))
            assert len(written) == len(data) and min(written) > 0

        out[name] = timed(run, len(data))
        out[name]["gpu_decoded"], out[name]["gpu_encoded"] = stream.stats.gpu_decoded, stream.stats.gpu_encoded
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=16, help="CPU decode threads")
    ap.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    ap.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast instead of fp16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the nets")
    ap.add_argument("--model-only", action="store_true")
    ap.add_argument(
        "--pipeline", action="store_true", help="also run the production pipeline (styleops.inference.stream)"
    )
    ap.add_argument("--variants", nargs="*", default=[], help="pipeline variants to run (substrings of their names)")
    ap.add_argument("--nets", nargs="*", default=[], help="nets to run (default: both)")
    args = ap.parse_args()
    global MEMORY_FORMAT, DTYPE, VARIANTS
    VARIANTS = args.variants
    MEMORY_FORMAT = torch.contiguous_format if args.contiguous else torch.channels_last
    DTYPE = torch.bfloat16 if args.bf16 else torch.float16
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    jpegs = make_jpegs(args.images, args.side)
    h, w = decode_jpeg(jpegs[0]).shape[-2:]
    results = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "image": f"{w}x{h}",
        "images": args.images,
        "batch": args.batch,
        "memory_format": "contiguous" if args.contiguous else "channels_last",
        "dtype": str(DTYPE),
        "compile": args.compile,
        "jpeg_kib": round(sum(len(j) for j in jpegs) / len(jpegs) / 1024, 1),
        "nets": {},
    }
    for name, net in load_nets(torch.device("cuda"), args.compile).items():
        if args.nets and name not in args.nets:
            continue
        with torch.inference_mode():
            results["nets"][name] = bench(net, jpegs, args.batch, args.threads, args.model_only)
        if args.pipeline:
            eager = getattr(net, "_orig_mod", net).to(memory_format=torch.contiguous_format)
            results["nets"][name].update(bench_pipeline(eager, jpegs, args.batch, args.threads, args.compile))
        print(name, json.dumps(results["nets"][name]), flush=True)
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
