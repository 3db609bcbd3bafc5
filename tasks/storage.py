"""Tasks that move local files into the bucket."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from runs import context
from runs.keys import is_image_key
from tasks import common


@task(name="upload-directory")
def upload_directory_task(src: str, prefix: str, writable: str | None = None) -> list[str]:
    """Upload every file under `src` to `prefix` (keys keep the relative paths); files already
    there with the same size are left alone. Returns the keys."""
    root = Path(src)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    st = context.store(writable=(writable or prefix,))
    keys, sent = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(root).as_posix()
        head = st.head(key)
        if head is None or head.size != path.stat().st_size:
            st.upload_file(key, path)
            sent += 1
        keys.append(key)
    common.logger().info("%s -> %s: %d files, %d uploaded", root, st.uri(prefix), len(keys), sent)
    return keys


ARTWORK_UPLOADED = "artwork.uploaded"


def announce_artworks(keys: list[str], bucket: str) -> int:
    """Emit one `artwork.uploaded` Prefect event per artwork key (resource `styleops.artwork.<key>`),
    which the artwork-sensor deployment's trigger reacts to. Returns how many were emitted (0 when
    no Prefect server is configured: the sensor's schedule finds the artwork instead)."""
    from prefect.events import emit_event

    from infra.prefect_server import configured_api_url

    if not configured_api_url():
        return 0
    sent = 0
    for key in keys:
        if key.startswith("artwork/") and is_image_key(key):
            event = emit_event(
                event=ARTWORK_UPLOADED,
                resource={
                    "prefect.resource.id": f"styleops.artwork.{key}",
                    "prefect.resource.name": key,
                    "styleops.bucket": bucket,
                },
            )
            sent += event is not None
    return sent
