"""OpenMP threads on a busy machine: torch's intra-op threads, spinning or sleeping while they wait.

    .venv/bin/python bench/bench_threads.py                 # idle machine
    .venv/bin/python bench/bench_threads.py --busy 2        # beside 2 niced CPU-bound processes

Times Magenta's transformer (the pretrained per-style network, 8/16/32 channels) on one
1024x768 image, 3 forwards after a warm-up, in a fresh interpreter per setting (OpenMP reads
OMP_WAIT_POLICY when torch loads it): 1 and all threads, with the OpenMP default (threads spin a
while before they sleep) and with OMP_WAIT_POLICY=PASSIVE (the `styleops` CLI's default). `--busy N`
starts N `nice -n 19` processes that burn a core each, as a user's other work does. Prints
markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import torch

CHILD = """
import sys, time, torch
from styleops.io.magenta_weights import load_magenta
torch.set_num_threads(int(sys.argv[1]))
net = load_magenta().transformer.eval()
style, x = torch.randn(1, 100) * 0.1, torch.rand(1, 3, 1024, 768)
with torch.inference_mode():
    net(x, style)
    t = time.perf_counter()
    for _ in range(3):
        net(x, style)
print((time.perf_counter() - t) / 3)
"""
BURN = {
    "python": "import itertools\nfor _ in itertools.count(): pass\n",
    # a training-like load: torch convolutions on one thread, as the decoder probes ran
    "torch": (
        "import torch\ntorch.set_num_threads(1)\nx = torch.rand(4, 64, 128, 128)\n"
        "conv = torch.nn.Conv2d(64, 64, 3, padding=1)\nwhile True:\n    conv(x).sum().backward()\n"
    ),
}
POLICIES = {"default": {}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}, "spin 10k": {"GOMP_SPINCOUNT": "10000"}}


def timed(threads: int, policy: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | policy
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads)], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--busy", type=int, default=0, help="niced CPU-bound processes beside the measurement")
    ap.add_argument("--burn", choices=sorted(BURN), default="python", help="what the busy processes run")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (the best is reported)")
    args = ap.parse_args()
    burners = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", BURN[args.burn]]) for _ in range(args.busy)]
    try:
        time.sleep(1 if burners else 0)
        cores = os.cpu_count() or 1
        print(f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
              f"{args.busy} niced {args.burn} processes beside")  # fmt: skip
        print("| threads | " + " | ".join(f"{name} s/image" for name in POLICIES) + " |")
        print("|---" * (len(POLICIES) + 1) + "|")
        for threads in sorted({1, cores}):
            times = [min(timed(threads, env) for _ in range(args.repeats)) for env in POLICIES.values()]
            print(f"| {threads} | " + " | ".join(f"{t:.3f}" for t in times) + " |", flush=True)
    finally:
        for p in burners:
            p.kill()


if __name__ == "__main__":
    main()
