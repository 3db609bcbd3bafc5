"""onnxruntime as the CPU backend of feed-forward nets and of the metrics' VGG (issue 29).

On a CPU, onnxruntime's fused kernels run the same network faster than torch's eager kernels:
Magenta's transformer on a 768x512 photo 0.11 s against 0.18 s (2 threads), and the metrics' VGG16
passes 0.15 s against 0.21 s (docs/benchmarks.md). `torch.compile` matches it on one shape but
recompiles for every new image size (14-27 s each, cold), and its dynamic-shape kernels are
slower than eager; an ONNX graph with dynamic height and width serves every size.

A module is exported once (TorchScript exporter, opset 17, batch, height and width dynamic) and
checked against torch on two sizes; a graph that differs (a shape baked in by the trace) or a
module that does not export leaves `export` returning None, and the caller keeps torch.
With a `cache_dir`, the outcome is kept on disk under a digest of everything the graph depends on
(the module's weights and buffers, the styleops source, torch's and onnxruntime's versions, the
check sizes), so later commands skip the export (about 1.4 s a command, most of it importing
torch.onnx). onnxruntime is imported here only, when a backend is asked for.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import logging
import os
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleops.errors import InvalidInputError
from styleops.models.vgg import VGGEncoder, subset

_log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
OPSET = 17
MAX_CACHED_GRAPHS = 32
"""Graphs (and torch markers) a cache folder keeps; the least recently used go first."""
TOLERANCE = 1e-3
"""Largest |onnxruntime - torch| an exported graph may show on its check inputs (outputs in [0, 1]
or VGG features; measured: 1.2e-6 and 2e-7 relative)."""


def available() -> bool:
    """Whether onnxruntime is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def chosen_backend(setting: str, device: torch.device) -> str:
    """'torch' or 'onnxruntime' for a `setting` in BACKENDS on `device`: onnxruntime runs on the
    CPU only; 'auto' takes it there when it is installed. InvalidInputError for an unknown setting
    or for 'onnxruntime' that is not installed."""
    if setting not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {setting!r}")
    if setting == "torch" or device.type != "cpu":
        return "torch"
    if setting == "onnxruntime" and not available():
        raise InvalidInputError("backend 'onnxruntime' needs the onnxruntime package: pip install onnxruntime")
    return "onnxruntime" if available() else "torch"


MAX_SESSIONS = 8
_sessions: dict[tuple[str, int, bool], Any] = {}
_sessions_lock = threading.Lock()


def session(graph: bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session of `graph` with `threads` intra-op threads (default: torch's),
    shared by every caller in the process that asks for the same graph and threads (the check of
    an export, then the engines of a run's shards; `run` is thread-safe): a session is built
    once (about 0.2 s for the metrics' VGG). Its threads sleep while they wait when
    OMP_WAIT_POLICY is PASSIVE (the CLI's default, for busy machines), as torch's OpenMP
    threads do."""
    threads = threads or torch.get_num_threads()
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    key = (hashlib.sha256(graph).hexdigest(), threads, passive)
    with _sessions_lock:
        found = _sessions.get(key)
    if found is not None:
        return found
    made = _new_session(graph, threads, passive)
    with _sessions_lock:
        if key not in _sessions and len(_sessions) >= MAX_SESSIONS:
            _sessions.pop(next(iter(_sessions)))  # the oldest
        return _sessions.setdefault(key, made)


def _new_session(graph: bytes, threads: int, passive: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if passive:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


_graphs: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, ...], bytes | None]] = weakref.WeakKeyDictionary()
_export_lock = threading.Lock()


def cached_export(
    module: nn.Module,
    samples: Sequence[Tensor],
    n_outputs: int = 1,
    key: tuple[str, ...] = (),
    owner: nn.Module | None = None,
    cache_dir: Path | None = None,
) -> bytes | None:
    """`export`, once per (owner, key) while `owner` (default `module`) lives: the shards of a run
    share the cached model, and export it once. One export at a time. With `cache_dir`, also
    once per `graph_digest` on disk: `<digest>.onnx` (the graph, checked again against torch on
    `samples` when read, and exported anew if it does not match) or `<digest>.torch` (it did not
    export or match; torch runs it), written atomically."""
    with _export_lock:
        per_owner = _graphs.setdefault(owner if owner is not None else module, {})
        if key not in per_owner:
            per_owner[key] = _disk_export(module, samples, n_outputs, key, cache_dir)
        return per_owner[key]


def _disk_export(
    module: nn.Module, samples: Sequence[Tensor], n_outputs: int, key: tuple[str, ...], cache_dir: Path | None
) -> bytes | None:
    if cache_dir is None:
        return export(module, samples, n_outputs)
    digest = graph_digest(module, samples, n_outputs, key)
    graph_file, torch_file = cache_dir / f"{digest}.onnx", cache_dir / f"{digest}.torch"
    if graph_file.is_file():
        graph = graph_file.read_bytes()
        if matches(module, graph, samples):  # cheap (no export), and what makes a stale file harmless
            _touch(graph_file)
            return graph
    elif torch_file.is_file():
        _log.info("%s: torch runs it (did not export before: %s)", _name(module), torch_file.name)
        return None
    graph = export(module, samples, n_outputs)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        out = graph_file if graph is not None else torch_file
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(graph or b"")
        os.replace(tmp, out)
        _prune(cache_dir, MAX_CACHED_GRAPHS)
    except OSError as exc:  # a read-only or full cache: this process still has the graph
        _log.info("could not keep the ONNX export in %s: %s", cache_dir, exc)
    return graph


def _touch(path: Path) -> None:
    """Mark a cached graph used (its mtime), for `_prune`."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _prune(cache_dir: Path, keep: int) -> None:
    """Delete all but the `keep` most recently used cache files (other processes may race: a file
    already gone is fine)."""
    files = sorted(
        (f for f in cache_dir.iterdir() if f.suffix in (".onnx", ".torch") and not f.name.startswith(".")),
        key=_mtime,
        reverse=True,
    )
    for f in files[keep:]:
        f.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone meanwhile (another process pruned it)
        return 0.0


def graph_digest(module: nn.Module, samples: Sequence[Tensor], n_outputs: int, key: tuple[str, ...]) -> str:
    """sha256 hex of what `export(module, samples, n_outputs)` depends on: every submodule's class
    and plain attributes (numbers, strings, tensors: e.g. a blend's alpha), all parameters and
    buffers (names, dtypes, shapes, bytes), every styleops source file (a forward may call any
    helper), torch's and onnxruntime's versions, the opset, the check sizes and `key`."""
    import onnxruntime as ort

    h = hashlib.sha256()
    head = (torch.__version__, ort.__version__, OPSET, key, n_outputs, [tuple(x.shape) for x in samples])
    h.update(f"{head!r}\0{_source_digest()}\0".encode())
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, m in module.named_modules():
        h.update(f"{name}\0{type(m).__module__}.{type(m).__qualname__}\0".encode())
        for attr, value in sorted(vars(m).items()):
            if isinstance(value, Tensor):
                tensors.append((f"{name}.{attr}", value))
            elif value is None or isinstance(value, (bool, int, float, str, tuple)):
                h.update(f"{attr}={value!r}\0".encode())
    for name, t in tensors:
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def _source_digest() -> str:
    """sha256 hex of every .py file of the styleops package (paths and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f"{f.relative_to(root)}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def export(module: nn.Module, samples: Sequence[Tensor], n_outputs: int = 1) -> bytes | None:
    """`module` (one image batch [N, 3, H, W] in, `n_outputs` tensors out) as an ONNX graph with
    N, H and W dynamic, exported on samples[0] (in its `export_form`) and checked on every sample
    (other sizes) against the module itself within TOLERANCE (`matches`); None (a note in the
    log: torch runs it, the rows' lineage says so) when it does not export (adaptive pooling,
    eigh) or does not match (Pix2Pix's U-Net: instance norm on its 1x1 bottleneck; a trace that
    baked a size in)."""
    outputs = [f"y{i}" for i in range(n_outputs)]
    axes = {"x": {0: "n", 2: "h", 3: "w"}} | {o: {0: "n", 2: f"{o}_h", 3: f"{o}_w"} for o in outputs}
    buf = io.BytesIO()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes: the check below is what counts
            torch.onnx.export(
                _OneInput(export_form(module)), (samples[0],), buf, input_names=["x"], output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any export failure: torch runs it
        _log.info("%s does not export to ONNX (%s); torch runs it", _name(module), str(exc).splitlines()[0][:200])
        return None
    graph = buf.getvalue()
    return graph if matches(module, graph, samples) else None


def matches(module: nn.Module, graph: bytes, samples: Sequence[Tensor]) -> bool:
    """Whether onnxruntime running `graph` gives `module`'s outputs within TOLERANCE on every
    sample (a note in the log where not, or where the graph does not load or run)."""
    try:
        check = session(graph)
        for x in samples:
            with torch.no_grad():
                want = module(x)
            want = (want,) if isinstance(want, Tensor) else tuple(want)
            got = check.run(None, {"x": x.numpy()})
            worst = max(float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want, strict=True))
            if worst > TOLERANCE:
                _log.info("%s: onnxruntime differs from torch by %.2g at %s; torch runs it", _name(module), worst,
                          list(x.shape))  # fmt: skip
                return False
    except Exception as exc:  # noqa: BLE001 - a graph onnxruntime cannot load or run: torch runs it
        reason = str(exc).splitlines()[0][:200]
        _log.info("%s: onnxruntime cannot run its graph (%s); torch runs it", _name(module), reason)
        return False
    return True


def check_inputs(multiple: int = 16, side: int = 256) -> list[Tensor]:
    """Two smooth photo-like inputs [1, 3, H, W] in [0, 1] of different sizes (side x side and
    side x about 1.5 side, multiples of `multiple`) to export and check a feed-forward net on."""
    g = torch.Generator().manual_seed(0)
    side = -(-side // multiple) * multiple
    wide = side + -(-(side // 2) // multiple) * multiple
    coarse = torch.rand(1, 3, 8, 12, generator=g)
    return [F.interpolate(coarse, size=s, mode="bilinear", align_corners=False) for s in ((side, side), (side, wide))]


class OnnxRuntimeModule(nn.Module):
    """A feed-forward net run by onnxruntime: forward(x [N, 3, H, W] float32 CPU) -> [N, 3, H', W'].

    Build it with `from_module`. The torch module it was exported from stays a submodule
    (`torch_module`), so the wrapper's parameters and device are that module's."""

    def __init__(self, torch_module: nn.Module, graph: bytes) -> None:
        super().__init__()
        self.torch_module = torch_module
        self._session = session(graph)

    @classmethod
    def from_module(
        cls, module: nn.Module, multiple: int = 16, cache_dir: Path | None = None
    ) -> OnnxRuntimeModule | None:
        """`module` exported and checked (`export` on `check_inputs`; kept in `cache_dir` when
        given, see `cached_export`), or None where it does not, or where it or a part of it says
        it cannot (`onnx_export = False`: known not to export, so not tried; a failed export would
        print the exporter's whole graph on stderr)."""
        opted_out = [type(m).__name__ for m in module.modules() if getattr(m, "onnx_export", True) is False]
        if opted_out:
            _log.info("%s does not export to ONNX (%s); torch runs it", _name(module), opted_out[0])
            return None
        graph = cached_export(module.eval(), check_inputs(multiple), key=(str(multiple),), cache_dir=cache_dir)
        return cls(module, graph) if graph is not None else None

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self._session.run(None, {"x": x.detach().float().contiguous().numpy()})[0])


def export_form(module: nn.Module) -> nn.Module:
    """`module`, or a copy computing the same function in a form onnxruntime runs faster: each
    full-resolution convolution to a few channels (stride 1, no padding of its own, kernel >= 7,
    at most 4 outputs: the last 9x9 of Johnson's and Magenta's transformers) becomes
    `SpaceToDepthConv`. onnxruntime's blocked layout computes outputs 16 channels at a time, so a
    9x9 convolution to 3 channels costs as much as one to 16: 68 ms of Magenta's 212 at
    1024x688; the whole net 0.212 -> 0.194 s (2 threads, docs/benchmarks.md)."""
    if not any(isinstance(m, nn.Conv2d) and _few_outputs_at_full_size(m) for m in module.modules()):
        return module
    form = copy.deepcopy(module)
    for parent in list(form.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and _few_outputs_at_full_size(child):
                setattr(parent, name, SpaceToDepthConv(child))
    return form


def _few_outputs_at_full_size(conv: nn.Conv2d) -> bool:
    k = conv.kernel_size
    return (
        k[0] == k[1] >= 7
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding == (0, 0)
        and conv.out_channels <= 4
        and conv.in_channels <= 32
    )


class SpaceToDepthConv(nn.Module):
    """A k x k convolution (stride 1, no padding) computed at half resolution: the input
    pixel-unshuffled by 2 ([N, 4C, H/2, W/2]), a ceil((k+1)/2)-square convolution to 4 x the
    outputs, then pixel-shuffled back and cropped: the same sums, in another order (within about
    1e-6). x [N, C, H, W] -> [N, C', H - k + 1, W - k + 1], as the convolution it replaces."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        k, cin, cout, r = conv.kernel_size[0], conv.in_channels, conv.out_channels, 2
        taps = -(-(k + r - 1) // r)
        w = conv.weight.detach()
        weight = torch.zeros(cout * r * r, cin * r * r, taps, taps, dtype=w.dtype)
        outs, ins = torch.arange(cout) * r * r, torch.arange(cin) * r * r
        for a in range(r):  # output sub-pixel (a, b) of each 2x2 block ...
            for b in range(r):
                for dy in range(k):  # ... sums kernel tap (dy, dx) over input sub-pixel (sy, sx) of block (ty, tx)
                    ty, sy = divmod(a + dy, r)
                    for dx in range(k):
                        tx, sx = divmod(b + dx, r)
                        weight[(outs + a * r + b)[:, None], (ins + sy * r + sx)[None, :], ty, tx] = w[:, :, dy, dx]
        self.kernel, self.taps = k, taps
        self.weight = nn.Parameter(weight, requires_grad=False)
        bias = conv.bias.detach().repeat_interleave(r * r) if conv.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        oh, ow = h - self.kernel + 1, w - self.kernel + 1
        rows = (oh + 1) // 2 * 2 + (self.taps - 1) * 2  # whole 2x2 blocks covering every output's taps
        cols = (ow + 1) // 2 * 2 + (self.taps - 1) * 2
        y = F.conv2d(F.pixel_unshuffle(F.pad(x, (0, cols - w, 0, rows - h)), 2), self.weight, self.bias)
        return F.pixel_shuffle(y, 2)[..., :oh, :ow]


class _OneInput(nn.Module):
    """`module(x)` alone: the exporter would turn the module's other arguments' defaults (a style
    index) into graph inputs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Any:
        return self.module(x)


class _Layers(nn.Module):
    """A VGG encoder's chosen layers as a tuple (what an ONNX graph returns)."""

    def __init__(self, encoder: VGGEncoder, layers: tuple[str, ...]) -> None:
        super().__init__()
        self.encoder, self.layers = encoder, layers

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        out = self.encoder(x, layers=self.layers)
        return tuple(out[n] for n in self.layers)


class OnnxRuntimeEncoder(nn.Module):
    """A `VGGEncoder` whose passes run on onnxruntime: the same `forward(images, layers=None)` ->
    {layer: [N, C, h, w]}, `layers` and `features`; one graph per set of layers asked, exported at
    the first ask (kept in `cache_dir` when given, see `cached_export`). A set that does not
    export runs on torch."""

    def __init__(self, encoder: VGGEncoder, cache_dir: Path | None = None) -> None:
        super().__init__()
        self.encoder, self.cache_dir = encoder, cache_dir
        self.layers, self.features = encoder.layers, encoder.features
        self._sessions: dict[tuple[str, ...], Any] = {}

    def forward(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        names = tuple(subset(self.encoder._index, layers).values())
        if names not in self._sessions:
            graph = cached_export(
                _Layers(self.encoder, names), check_inputs(16, 64), len(names), key=names, owner=self.encoder,
                cache_dir=self.cache_dir,
            )  # fmt: skip
            self._sessions[names] = session(graph) if graph is not None else None
        run = self._sessions[names]
        if run is None or images.device.type != "cpu" or images.requires_grad:
            return self.encoder(images, layers=names)
        outs = run.run(None, {"x": images.detach().float().contiguous().numpy()})
        return {n: torch.from_numpy(o) for n, o in zip(names, outs, strict=True)}


def _name(module: nn.Module) -> str:
    return type(module).__name__
