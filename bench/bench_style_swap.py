"""Style swap on CPU: time and peak memory vs content size and bank size, chunked vs unchunked.

    .venv/bin/python bench/bench_style_swap.py [--quick] [--repeats 3] [--max-gib 6]

`styleops.ops.style_swap` scans the patch bank in chunks of `chunk_size` patches keeping a running
max/argmax, so its score tensor is chunk x H' x W' (H' = H - k + 1) instead of P x H' x W'.
"Unchunked" is the same function with chunk_size=len(bank): one conv over the whole bank.

Inputs are random relu3_1-shaped features (content [1, 256, image/4, image/4], relu of a seeded
randn; bank = `build_patch_bank` of a seeded relu(randn) artwork map subsampled to exactly P 3x3
patches). The cost of style swap does not depend on the values, only on P and H x W.

Two sweeps (defaults, ~10 minutes on 2 cores; `--quick` is a ~1 minute subset: 256/384 px at
4096 patches, and 1k/4k patches at 256 px):
  (a) content image 256/512/768/1024 px (64..256 feature side) at a fixed bank of 4096 patches,
      chunk 2048 vs unchunked;
  (b) bank of 1k/4k/16k patches at a fixed 512 px content image (128 x 128 features),
      chunk 512 vs chunk 2048 vs unchunked.

How it is measured. Every configuration runs in a fresh Python subprocess (this file with
--child), so no allocator cache or peak from another configuration leaks in. In the child:
one tiny style_swap call (same channels and chunk size, 16 x 16 content) warms up the thread
pool and oneDNN, then `--repeats` timed calls on the real inputs; seconds = their median.
Peak memory: torch's CPU allocations are invisible to tracemalloc, so we use the kernel's
resident-set high-water mark. Before each timed call the child writes "5" to
/proc/self/clear_refs (Linux >= 4.0), which resets VmHWM (and ru_maxrss) to the current RSS, reads
VmRSS as the baseline (inputs and bank already resident), runs the call, and reads VmHWM.
"peak +MiB" is the largest VmHWM - baseline over the timed calls: the extra resident memory the
call itself needed at its worst moment (scores, one-hot map, conv workspaces, running max/argmax,
output), with the inputs excluded. Big buffers are returned to the OS when freed, so each call
pays for its own pages: repeated calls measure within ~15% of each other (the first, cold one
highest), and the max is what is reported. If clear_refs is not
writable, VmHWM is the child's lifetime peak (input building included), which can only
over-report, and the table marks such peaks with "*".

"scores est." is the analytic size of one score tensor, min(chunk, P) x H' x W' x 4 bytes (for
batch 1). The measured peak is a few times that (about 3-4x on this build): CPU conv2d alone
peaks at about twice its output (measured; presumably oneDNN's blocked-layout result reordered
to the plain layout),
and pass 2's one-hot map is as big as the scores again. Configurations whose score estimate
exceeds --max-gib are not run and are printed as "skipped: > N GiB estimated"; since the real
peak is ~4x the estimate, keep --max-gib below a quarter of the free RAM.

A small correctness check runs first (chunked == unchunked up to float rounding, with chunk
sizes that do and do not divide the bank); the bench exits with an error if they disagree.
Prints markdown tables for docs/benchmarks.md, headed with the machine and the 1-minute load
average at start (timings are only comparable on an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

from styleops.ops.style_swap import PatchBank, build_patch_bank, style_swap

CHANNELS = 256  # relu3_1
PATCH = 3
UNCHUNKED = 0  # chunk value meaning chunk_size=len(bank)


def relu_randn(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).relu_()


def make_bank(patches: int, seed: int, channels: int = CHANNELS) -> PatchBank:
    """Exactly `patches` 3x3 patches of a random artwork feature map, through the real builder."""
    side = math.isqrt(patches - 1) + PATCH  # (side - k + 1)^2 >= patches
    style = relu_randn(1, channels, side, side, generator=torch.Generator().manual_seed(seed))
    bank = build_patch_bank(style, PATCH, 1, max_patches=patches)
    assert len(bank) == patches, (len(bank), patches)
    return bank


def correctness_check() -> None:
    """Chunked and unchunked swaps must give the same map (summation order may differ: allclose)."""
    gen = torch.Generator().manual_seed(1)
    x = relu_randn(2, 32, 20, 17, generator=gen)
    bank = make_bank(700, seed=2, channels=32)
    ref = style_swap(x, bank, chunk_size=len(bank))
    for chunk in (64, 100, 350, 699):
        out = style_swap(x, bank, chunk_size=chunk)
        if not torch.allclose(out, ref, rtol=1e-5, atol=1e-6):
            raise SystemExit(
                f"CORRECTNESS FAILURE: chunk_size={chunk} differs from unchunked, "
                f"max |diff| = {(out - ref).abs().max():.3g}"
            )
    # Self-swap: with the bank built from the content itself every patch finds itself.
    x = relu_randn(1, 32, 12, 12, generator=gen)
    self_bank = build_patch_bank(x)
    for chunk in (7, len(self_bank)):
        if not torch.allclose(style_swap(x, self_bank, chunk_size=chunk), x.half().float(), rtol=1e-5, atol=1e-6):
            raise SystemExit(f"CORRECTNESS FAILURE: self-swap with chunk_size={chunk} does not reproduce the content")
    print(
        "correctness: chunked == unchunked (chunks 64/100/350/699 of 700, allclose 1e-5) and self-swap == content: OK"
    )


# ---------------------------------------------------------------------------------------------
# child: one configuration in a fresh process


def _status_mib() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(cfg: dict) -> dict:
    torch.manual_seed(cfg["seed"])
    side, patches, chunk = cfg["side"], cfg["patches"], cfg["chunk"]
    x = relu_randn(1, CHANNELS, side, side, generator=torch.Generator().manual_seed(cfg["seed"]))
    bank = make_bank(patches, seed=cfg["seed"] + 1)
    chunk_size = len(bank) if chunk == UNCHUNKED else chunk
    # warm-up: thread pool, oneDNN primitives; small content, same channels and chunking
    style_swap(
        x[..., :16, :16].contiguous(),
        make_bank(min(patches, 2 * chunk_size, 1024), seed=cfg["seed"] + 2),
        chunk_size=chunk_size,
    )
    times, peaks, exact = [], [], True
    for _ in range(cfg["repeats"]):
        exact = _reset_peak() and exact
        base = _status_mib()["VmRSS"]
        t = time.perf_counter()
        out = style_swap(x, bank, chunk_size=chunk_size)
        times.append(time.perf_counter() - t)
        peaks.append(_status_mib()["VmHWM"] - base)
        del out
    return {
        "seconds": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "peak_mib": max(peaks),
        "exact_peak": exact,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------
# parent


def score_bytes(side: int, patches: int, chunk: int) -> int:
    positions = (side - PATCH + 1) ** 2
    return min(patches, chunk or patches) * positions * 4


def run_config(side: int, patches: int, chunk: int, args, cache: dict) -> dict:
    key = (side, patches, chunk)
    if key in cache:
        return cache[key]
    est = score_bytes(side, patches, chunk)
    if est > args.max_gib * 2**30:
        res = {"skipped": True, "est": est}
    else:
        cfg = {"side": side, "patches": patches, "chunk": chunk, "repeats": args.repeats, "seed": args.seed}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"child {cfg} failed (rc {proc.returncode}):\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1]) | {"skipped": False, "est": est}
        print(
            f"  [{side}x{side} features, P={patches}, {chunk_name(chunk)}] "
            f"{res['seconds']:.2f} s, peak +{res['peak_mib']:.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    cache[key] = res
    return res


def chunk_name(chunk: int) -> str:
    return "unchunked" if chunk == UNCHUNKED else f"chunk {chunk}"


def row(first: list[str], side: int, patches: int, chunk: int, res: dict, max_gib: float) -> str:
    est_mib = f"{res['est'] / 2**20:.0f}"
    if res["skipped"]:
        return (
            "| "
            + " | ".join([*first, chunk_name(chunk), f"skipped: > {max_gib:g} GiB estimated", "", "", "", est_mib])
            + " |"
        )
    ns = res["seconds"] / (patches * (side - PATCH + 1) ** 2) * 1e9
    star = "" if res["exact_peak"] else "*"
    return (
        "| "
        + " | ".join(
            [
                *first,
                chunk_name(chunk),
                f"{res['seconds']:.2f}",
                f"{res['min_s']:.2f}-{res['max_s']:.2f}",
                f"{ns:.3f}",
                f"{res['peak_mib']:.0f}{star}",
                est_mib,
            ]
        )
        + " |"
    )


HEADER_TAIL = "variant | seconds (median) | min-max | ns / (patch x position) | peak +MiB | scores est. MiB |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1 minute subset")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="content image sides in px for sweep (a) (default 256 512 768 1024)",
    )
    ap.add_argument(
        "--patches", type=int, nargs="+", default=None, help="bank sizes for sweep (b) (default 1024 4096 16384)"
    )
    ap.add_argument("--fixed-patches", type=int, default=None, help="bank size in sweep (a) (default 4096)")
    ap.add_argument("--fixed-size", type=int, default=None, help="content image px in sweep (b) (default 512)")
    ap.add_argument(
        "--chunks-a", type=int, nargs="+", default=[2048, UNCHUNKED], help="chunk sizes for sweep (a), 0 = unchunked"
    )
    ap.add_argument(
        "--chunks-b",
        type=int,
        nargs="+",
        default=[512, 2048, UNCHUNKED],
        help="chunk sizes for sweep (b), 0 = unchunked",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--max-gib", type=float, default=6.0, help="skip configurations whose score tensor would exceed this"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return

    sizes = args.sizes or ([256, 384] if args.quick else [256, 512, 768, 1024])
    patches = args.patches or ([1024, 4096] if args.quick else [1024, 4096, 16384])
    fixed_p = args.fixed_patches or 4096
    fixed_size = args.fixed_size or (256 if args.quick else 512)
    torch.manual_seed(args.seed)
    correctness_check()
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    cache: dict = {}
    res_a = {(s, c): run_config(s // 4, fixed_p, c, args, cache) for s in sizes for c in args.chunks_a}
    fs = fixed_size // 4
    res_b = {(p, c): run_config(fs, p, c, args, cache) for p in patches for c in args.chunks_b}

    threads = {r["threads"] for r in cache.values() if not r["skipped"]}
    print(
        f"\n# {platform.node()} {platform.processor() or platform.machine()} threads={torch.get_num_threads()} "
        f"(children: {sorted(threads)}) "
        f"cpu_count={os.cpu_count()} torch {torch.__version__}; load avg 1 min at start {load:.2f}; "
        f"{args.repeats} timed calls per configuration (median), fresh process each; "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    print(f"\n(a) vs content size, bank P = {fixed_p} patches (3x3x{CHANNELS}), relu3_1 features = image/4\n")
    print(f"| image px | features H x W | {HEADER_TAIL}\n|---|---|---|---|---|---|---|---|")
    for (s, c), res in res_a.items():
        print(row([str(s), f"{s // 4} x {s // 4}"], s // 4, fixed_p, c, res, args.max_gib))
    print(f"\n(b) vs bank size, content {fixed_size} px ({fs} x {fs} x {CHANNELS} features)\n")
    print(f"| patches P | {HEADER_TAIL}\n|---|---|---|---|---|---|---|")
    for (p, c), res in res_b.items():
        print(row([str(p)], fs, p, c, res, args.max_gib))
    if not all(r["exact_peak"] for r in cache.values() if not r["skipped"]):
        print(
            "\n* /proc/self/clear_refs not writable: VmHWM not reset, the peak includes input building (over-reports)."
        )


if __name__ == "__main__":
    main()
