"""The same networks on torch and on onnxruntime, CPU, model only (issue 29).

    .venv/bin/python bench/bench_cpu_backends.py              # 1 and all threads
    .venv/bin/python bench/bench_cpu_backends.py --threads 2

Magenta's transformer with a fixed style (what the default per-style model runs) on one 1024x768
photo, and the metrics' VGG16 passes on a 256x171 pair (the photo to relu2_2, the output to relu4_3:
what one manifest row's metrics run), each: torch eager (NCHW), torch channels-last, and
onnxruntime through `styleops.inference.onnx_backend` (the export the pipeline uses). Time per call
is the best of 5 after a warm-up; the largest |difference| from torch eager is printed beside.
Needs `styleops weights install` (Magenta's weights and the VGG16 trunk in the cache).
Prints markdown rows for docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from styleops.inference.onnx_backend import OnnxRuntimeEncoder, OnnxRuntimeModule
from styleops.io.magenta_weights import load_magenta
from styleops.io.weights import load_encoder
from styleops.models.magenta import MagentaStylizer


def best(fn: Callable[[], object], n: int = 5) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@contextlib.contextmanager
def channels_last(*modules: nn.Module) -> Iterator[None]:
    """The modules' weights in channels-last memory format within the block (`.to` is in place)."""
    for m in modules:
        m.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for m in modules:
            m.to(memory_format=torch.contiguous_format)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    net = MagentaStylizer(load_magenta().transformer, torch.randn(1, 100, generator=g) * 0.5).eval()
    photo = torch.rand(1, 3, 768, 1024, generator=g)
    vgg = load_encoder(None, ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    pair = torch.rand(1, 3, 171, 256, generator=g), torch.rand(1, 3, 171, 256, generator=g)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ort_net = OnnxRuntimeModule.from_module(net)  # its session takes torch's thread count
        ort_vgg = OnnxRuntimeEncoder(vgg)
        assert ort_net is not None
        with torch.inference_mode():
            want = net(photo)

            def metrics(enc: Callable[..., dict[str, Tensor]]) -> Callable[[], object]:
                return lambda: (enc(pair[0], layers=("relu2_2",)), enc(pair[1]))

            model = {"torch eager": best(lambda: net(photo))}
            meas = {"torch eager": best(metrics(vgg))}
            with channels_last(net, vgg):
                photo_cl = photo.contiguous(memory_format=torch.channels_last)
                model["torch channels-last"] = best(lambda: net(photo_cl))
                meas["torch channels-last"] = best(metrics(vgg))
            model["onnxruntime"] = best(lambda: ort_net(photo))
            meas["onnxruntime"] = best(metrics(ort_vgg))
            err = float((ort_net(photo) - want).abs().max())
        for name in model:
            rows.append((threads, name, model[name], meas[name]))
        rows.append((threads, "torch eager / onnxruntime", model["torch eager"] / model["onnxruntime"],
                     meas["torch eager"] / meas["onnxruntime"]))  # fmt: skip
        print(f"threads {threads}: onnxruntime's output within {err:.1e} of torch's")
    print(f"\nMachine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")  # fmt: skip
    print("| threads | backend | transformer, 1024x768 (s) | metrics' VGG16, 256x171 pair (s) |\n|---|---|---|---|")
    for threads, name, a, b in rows:
        unit = "x" if "/" in name else ""
        print(f"| {threads} | {name} | {a:.3f}{unit} | {b:.3f}{unit} |")


if __name__ == "__main__":
    main()
