"""Overlapped, memory-bounded stylization of a stream of encoded images (one shard's worth).

    load + decode (threads) -> group by size bucket -> device: prepare, stylize, measure,
    JPEG encode on CUDA -> encode (threads, otherwise) + write (threads)

Every stage runs at once: while the device works on one batch, background threads download and
decode the next images and encode and write the previous results. Queues are bounded (`depth`
images waiting to be batched, `max_pending` in partial buckets, `depth` writes in flight), so
memory stays flat however long the stream. On CUDA, complete RGB/greyscale JPEGs that need no
EXIF rotation are decoded on the GPU in the load threads, each on its own CUDA stream
(`torchvision.io.decode_jpeg`, nvJPEG), anything
else on the CPU (`styleops.io.images.decode_image`); JPEG output is encoded on the GPU too. CPU
tensors go to the GPU from pinned memory with non-blocking copies.

A bad image never stops the stream: its `Job` carries the error (decode, caps, out of memory, or
one of the caller's `expected_errors` from `load`/`write`) to `write`, which records it.
The store is not known here: `load(item) -> bytes` and `write(job) -> row` are the caller's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import Tensor

from styleops.errors import ImageError
from styleops.io.images import decode_image, encode_image, plain_jpeg_size, to_uint8

T = TypeVar("T")
R = TypeVar("R")

Measure = Callable[[Tensor, Tensor], tuple[float | None, float | None]]
"""(prepared input [3, h, w], output [3, h, w]) -> (content loss, style loss); None: not measured."""


class StylizeEngine(Protocol):
    """What the stream drives: `styleops.inference.engine.InferenceEngine` (feed-forward nets) and
    `styleops.inference.gatys.GatysEngine` (optimization)."""

    batch_size: int  # images per device batch
    device: torch.device

    def bucket(self, h: int, w: int) -> Hashable:
        """Images of an h x w input that may share a batch have equal buckets."""
        ...

    def prepare(self, image: Tensor) -> Tensor:
        """uint8 [3, H, W] (on any device) -> float [3, h, w] in [0, 1] on the engine's device."""
        ...

    def try_stylize(self, prepared: Sequence[Tensor]) -> Sequence[Tensor | Exception]:
        """One output per prepared image, in order; an image that could not be done is its error."""
        ...


@dataclass(eq=False)
class Job(Generic[T]):
    """One image's way through the pipeline; tensors are dropped once they are no longer needed."""

    item: T
    t0: float = field(default_factory=time.perf_counter)  # when its work began
    in_size: tuple[int, int] | None = None  # decoded (H, W)
    out_size: tuple[int, int] | None = None  # stylized (h, w)
    losses: tuple[float | None, float | None] = (None, None)
    encoded: bytes | None = None  # the output file's bytes
    error: Exception | None = None
    decoded_on: str = "cpu"  # where the input was decoded: cpu | cuda
    _pixels: Tensor | None = None  # uint8 [3, H, W]
    _output: Tensor | None = None  # float [3, h, w] in [0, 1] (device) or uint8 (pinned host copy)
    _ready: Any = None  # torch.cuda.Event: the host copy of _output is complete


@dataclass
class StreamStats:
    """What a stream did: images by outcome and where their time went (seconds, summed over threads)."""

    images: int = 0
    failed: int = 0
    batches: int = 0
    gpu_decoded: int = 0
    gpu_encoded: int = 0
    device_s: float = 0.0  # wall time of the device stage (main thread)
    wall_s: float = 0.0


class StreamStylizer:
    """Stylize `items` with `engine` (a `StylizeEngine`: `bucket`, `prepare`, `try_stylize` and
    `batch_size`) through the overlapped pipeline above.

    load: item -> encoded bytes (a download; may set fields on the item, e.g. its checksum).
    write: a finished Job (with `encoded` bytes or `error`) -> the caller's record of it.
    fmt, quality: output encoding (`styleops.io.images.encode_image`).
    measure: optional per-image metrics on the device (None: skipped); measured: which items are
    measured (default all), e.g. a fixed sample.
    limits: (max_pixels, max_bytes) caps checked before any decode.
    expected_errors: exceptions from load/write that become the image's error (ImageError always does).
    threads: download/decode threads and encode/write threads (each); depth: images decoded ahead.
    gpu_codec: decode/encode JPEG on the GPU when the engine is on CUDA (None: when available);
    gpu_encode=False keeps the decode there but encodes in the write threads with `encoder`
    (uint8 or float [3, h, w] on the CPU -> bytes; default `encode_image` with fmt and quality).
    jpeg_decoder: decodes plain JPEGs (see `plain_jpeg_size`) on the CPU instead of `decode_image`
    when they are not decoded on the GPU (bytes -> uint8 [3, H, W]).
    """

    def __init__(
        self,
        engine: StylizeEngine | None,
        *,
        load: Callable[[T], bytes],
        write: Callable[[Job[T]], R],
        fmt: str = "jpeg",
        quality: int = 90,
        measure: Measure | None = None,
        measured: Callable[[T], bool] | None = None,
        limits: tuple[int, int],
        expected_errors: tuple[type[Exception], ...] = (),
        threads: int = 4,
        depth: int | None = None,
        gpu_codec: bool | None = None,
        gpu_encode: bool | None = None,
        encoder: Callable[[Tensor], bytes] | None = None,
        jpeg_decoder: Callable[[bytes], Tensor] | None = None,
    ) -> None:
        self.engine, self.load, self.write = engine, load, write
        self.fmt, self.quality, self.measure, self.limits = fmt, quality, measure, limits
        self.measured = measured
        self.expected = (ImageError, *expected_errors)
        self.batch_size = engine.batch_size if engine is not None else 1  # None: the load stage only (load_one)
        self.threads = threads
        self.depth = depth or max(8, 2 * self.batch_size)
        self.device = torch.device(engine.device) if engine is not None else torch.device("cpu")
        cuda = self.device.type == "cuda"
        self.gpu_decode = cuda and gpu_codec is not False
        self.gpu_encode = self.gpu_decode and fmt == "jpeg" and gpu_encode is not False
        self.encoder = encoder or (lambda y: encode_image(y, fmt, quality=quality))
        self.jpeg_decoder = jpeg_decoder
        self.stats = StreamStats()
        self._streams = (
            threading.local()
        )  # a CUDA stream per pipeline thread (nvJPEG decode in load threads, encode in write threads)
        self._lock = threading.Lock()  # stats updated from the write threads

    def run(self, items: Iterable[T]) -> Iterator[R]:
        """Yield `write(job)` for every item, as they finish (not in input order)."""
        t_start = time.perf_counter()
        with (
            ThreadPoolExecutor(self.threads, "styleops-load") as loads,
            ThreadPoolExecutor(self.threads, "styleops-write") as writes,
        ):
            pending: deque[Future[R]] = deque()
            decoded = _prefetch(loads, self.load_one, items, self.depth)
            for batch in bucketed(decoded, self._bucket, self.batch_size, max_pending=self.depth):
                if batch[0].error is None:
                    t = time.perf_counter()
                    self._device_stage(batch)
                    self.stats.device_s += time.perf_counter() - t
                    self.stats.batches += 1
                for job in batch:
                    pending.append(writes.submit(self._finish, job))
                while len(pending) > self.depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        self.stats.wall_s += time.perf_counter() - t_start

    # -- stages -------------------------------------------------------------------------------

    def load_one(self, item: T) -> Job[T]:
        """Download and decode one item (what `run` does in its load threads; on the GPU for plain
        JPEGs when CUDA); a bad one gets `error`, never raises."""
        job: Job[T] = Job(item)
        max_pixels, max_bytes = self.limits
        try:
            data = self.load(item)
            size = (
                plain_jpeg_size(data, max_pixels=max_pixels, max_bytes=max_bytes)
                if self.gpu_decode or self.jpeg_decoder
                else None
            )
            if size is not None and self.gpu_decode:
                self._decode_on_device(job, data, size)
            elif size is not None and self.jpeg_decoder is not None:
                job._pixels = self.jpeg_decoder(data)
            if job._pixels is None:  # anything else, or nvJPEG refused it: the CPU decoder
                job._pixels = decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes).pixels
            job.in_size = (job._pixels.shape[-2], job._pixels.shape[-1])
        except self.expected as exc:
            job.error = exc
        return job

    def _decode_on_device(self, job: Job[T], data: bytes, size: tuple[int, int]) -> None:
        """nvJPEG decode of one image in a load thread, on that thread's own CUDA stream, so it
        overlaps the device stage's work; `job._ready` tells the device stage when it is done.
        Leaves `job._pixels` unset when nvJPEG fails or disagrees with the header (CPU fallback)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        stream = self._thread_stream()
        try:
            with torch.cuda.stream(stream):
                img = decode_jpeg(
                    torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, device=self.device
                )
                ready = torch.cuda.Event()
                ready.record(stream)
        except RuntimeError:
            return
        if tuple(img.shape[-2:]) == size:
            job._pixels, job._ready, job.decoded_on = img, ready, "cuda"
            with self._lock:
                self.stats.gpu_decoded += 1

    def _thread_stream(self) -> torch.cuda.Stream:
        """This pipeline thread's own CUDA stream (created on first use)."""
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self.device)
        return stream

    def _bucket(self, job: Job[T]) -> Hashable:
        assert job.in_size is not None
        return self.engine.bucket(*job.in_size)

    def _device_stage(self, batch: list[Job[T]]) -> None:
        """Prepare, stylize, measure, and mark when each result is ready for its encode.
        Not under inference mode: Gatys optimizes its output."""
        current = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        for j in batch:
            if j._ready is not None and j._pixels is not None and current is not None:  # decoded in a load thread
                current.wait_event(j._ready)
                j._pixels.record_stream(current)  # freed after use here, not reused by that thread's stream meanwhile
                j._ready = None
        prepared = [self.engine.prepare(j._pixels) for j in batch]
        for j in batch:
            j._pixels = None
        results = self.engine.try_stylize(prepared)
        done: list[Job[T]] = []
        for job, x, y in zip(batch, prepared, results, strict=True):
            if isinstance(y, Exception):
                job.error = y
                continue
            job.out_size = (y.shape[-2], y.shape[-1])
            if self.measure is not None and (self.measured is None or self.measured(job.item)):
                job.losses = self.measure(x.to(y.device), y)
            job._output = y
            done.append(job)
        if self.device.type != "cuda":
            return
        for job in done:
            assert job._output is not None
            if not self.gpu_encode:  # uint8 to pinned host memory, asynchronously; _finish waits for it
                host = torch.empty(job._output.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(to_uint8(job._output), non_blocking=True)
                job._output = host
            job._ready = torch.cuda.Event()  # _finish (GPU JPEG encode or host copy) waits for this
            job._ready.record()

    def _encode_on_device(self, job: Job[T]) -> bytes:
        """nvJPEG encode of one result in a write thread, on that thread's own CUDA stream, after
        the device stage's work on it (an event): the device stage never waits for encoding."""
        from torchvision.io import encode_jpeg

        stream = self._thread_stream()
        with torch.cuda.stream(stream):
            stream.wait_event(job._ready)
            encoded = encode_jpeg(to_uint8(job._output), quality=min(self.quality, 95))  # type: ignore[arg-type]
            data = encoded.cpu().numpy().tobytes()
        with self._lock:
            self.stats.gpu_encoded += 1
        return data

    def _finish(self, job: Job[T]) -> R:
        """Encode on the CPU (unless done on the GPU) and hand the job to `write` (a write thread)."""
        if job.error is None and job.encoded is None:
            assert job._output is not None
            try:
                if self.gpu_encode:
                    job.encoded = self._encode_on_device(job)
                else:
                    if job._ready is not None:
                        job._ready.synchronize()
                    job.encoded = self.encoder(job._output)
            except self.expected as exc:
                job.error = exc
        job._output = job._pixels = job._ready = None
        with self._lock:
            self.stats.images += 1
            self.stats.failed += job.error is not None
        return self.write(job)


def _prefetch(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[R]:
    """`map(fn, items)` in the pool, in order, with at most `depth` results waiting in memory."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def bucketed(
    jobs: Iterable[Job[T]], key: Callable[[Job[T]], Hashable], batch_size: int, *, max_pending: int
) -> Iterator[list[Job[T]]]:
    """Group jobs into batches of one size bucket. A failed job passes alone, at once; a full bucket
    goes at once; when more than `max_pending` jobs wait, the fullest bucket goes; the rest at the end."""
    buckets: dict[Hashable, list[Job[T]]] = {}
    waiting = 0
    for job in jobs:
        if job.error is not None:
            yield [job]
            continue
        group = buckets.setdefault(key(job), [])
        group.append(job)
        waiting += 1
        if len(group) >= batch_size or waiting > max_pending:
            fullest = max(buckets, key=lambda k: len(buckets[k]))
            batch = buckets.pop(fullest)
            waiting -= len(batch)
            yield batch
    for batch in buckets.values():
        yield batch
