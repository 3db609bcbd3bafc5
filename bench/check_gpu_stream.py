"""Check by hand on a CUDA machine: the shard stream with nvJPEG decode/encode on real photos,
a JPEG corrupt past its header, a CMYK JPEG and a PNG; every image ends once, good or failed.

    python bench/check_gpu_stream.py
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from styleops.inference.engine import InferenceEngine
from styleops.inference.stream import StreamStylizer
from styleops.io.images import decode_image
from styleops.io.serialize import from_safetensors

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    data = {p.name: p.read_bytes() for p in sorted((ROOT / "examples/catalog").glob("*.jpg"))}
    good = data["kodim03.jpg"]
    data["corrupt-body.jpg"] = good[:600] + bytes(4000) + good[4600:]  # header and end marker intact
    for name, mode, fmt in (("cmyk.jpg", "CMYK", "JPEG"), ("photo.png", "RGB", "PNG")):
        buf = io.BytesIO()
        Image.open(io.BytesIO(good)).convert(mode).save(buf, fmt)
        data[name] = buf.getvalue()
    net = from_safetensors((ROOT / "examples/models/monet.safetensors").read_bytes())
    engine = InferenceEngine(net, device="cuda", batch_size=4, max_side=256)
    stream = StreamStylizer(
        engine,
        load=data.__getitem__,
        write=lambda job: (
            job.item,
            job.decoded_on,
            type(job.error).__name__ if job.error else None,
            len(job.encoded or b""),
        ),
        limits=(10**8, 10**8),
    )
    results = sorted(stream.run(list(data)))
    for r in results:
        print(r)
    print(stream.stats)
    assert sorted(r[0] for r in results) == sorted(data)
    try:
        decode_image(data["corrupt-body.jpg"])
        print("CPU decoder accepts the corrupt body too")
    except Exception as exc:  # noqa: BLE001
        print("CPU decoder:", type(exc).__name__, exc)


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    main()
