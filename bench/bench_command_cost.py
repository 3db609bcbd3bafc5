"""A command's fixed cost: the wall time of a `styleops stylize` with nothing left to do (every
image already in the manifest), against Prefect's temporary server per command and against the
local server the CLI keeps (issue 29).

    .venv/bin/python bench/bench_command_cost.py            # 5 runs per mode
    .venv/bin/python bench/bench_command_cost.py --runs 3

Set-up, in a private STYLEOPS_HOME (its own embedded store; the weights cache linked from
~/.styleops/cache, so `styleops weights install` must have run): the six examples/catalog photos
uploaded to catalog/bench/, examples/artwork to artwork/, and one `styleops stylize --catalog
bench --style monet --method magenta --max-side 256` to fill the manifest. Then, per mode
(STYLEOPS_PREFECT_SERVER=ephemeral | kept, no PREFECT_API_URL), --runs timed repeats of the same
command, each a new process, as a user types it; the first kept run starts the server and is
reported apart. Also timed: `styleops --help` (imports alone). Prints a table with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "styleops")
STYLIZE = ["stylize", "--catalog", "bench", "--style", "monet", "--method", "magenta", "--max-side", "256"]


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    r = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise SystemExit(f"styleops {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="styleops-cost-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "cache").symlink_to(Path.home() / ".styleops" / "cache")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API", "STYLEOPS_"))}
        env |= {"STYLEOPS_HOME": str(home), "PREFECT_HOME": str(Path(tmp) / "prefect-home")}
        try:
            timed(["upload", str(ROOT / "examples" / "catalog"), "catalog/bench/"], env)
            timed(["upload", str(ROOT / "examples" / "artwork"), "artwork/"], env)
            timed(STYLIZE, env | {"STYLEOPS_PREFECT_SERVER": "ephemeral"})
            rows = {"`styleops --help` (imports)": [timed(["--help"], env) for _ in range(args.runs)]}
            eph = env | {"STYLEOPS_PREFECT_SERVER": "ephemeral"}
            rows["no-op stylize, temporary server per command"] = [timed(STYLIZE, eph) for _ in range(args.runs)]
            kept = env | {"STYLEOPS_PREFECT_SERVER": "kept"}
            rows["no-op stylize, kept server: the first (starts it)"] = [timed(STYLIZE, kept)]
            rows["no-op stylize, kept server: the next ones"] = [timed(STYLIZE, kept) for _ in range(args.runs)]
        finally:
            subprocess.run([CLI, "server", "stop"], env=env, capture_output=True, timeout=120)
            subprocess.run([CLI, "store", "stop"], env=env, capture_output=True, timeout=120)
    print(f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| command | runs | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {len(values)} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")


if __name__ == "__main__":
    main()
