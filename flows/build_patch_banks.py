"""Flow: the artworks in the store -> one style-swap patch bank per style (banks/<style>/<version>/)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from runs.keys import artifact_key
from tasks.banks import build_patch_bank_task, list_artworks_task, promote_bank_if_first_task


@flow(name="build-patch-banks", task_runner=ThreadPoolTaskRunner(max_workers=2))
def build_patch_banks(
    artworks: str = "artwork/", force: bool = False, encoder: str | None = None, layer: str | None = None
) -> dict[str, Any]:
    """Build (or confirm up to date) the patch bank of every artwork/<style>/ under `artworks`;
    a style's first bank is promoted. `force` rebuilds banks whose inputs did not change.
    `encoder` (vgg16 | vgg19) and `layer`: those of the inverse network that will decode them
    (default: settings.bank_encoder, bank_layer).

    Returns {"built": [styles], "unchanged": [styles], "banks": {style: version}, "promoted": [styles]}.
    """
    by_style = list_artworks_task(artworks)
    futures = {
        style: build_patch_bank_task.submit(style, keys, force, encoder, layer) for style, keys in by_style.items()
    }
    results = {style: future.result() for style, future in futures.items()}
    # Every style, not only the built ones: a run that died between registering and promoting heals here.
    promoted = [style for style, r in results.items() if promote_bank_if_first_task(style, r["version"])]
    summary = {
        "built": sorted(s for s, r in results.items() if r["status"] == "built"),
        "unchanged": sorted(s for s, r in results.items() if r["status"] == "unchanged"),
        "banks": {s: results[s]["version"] for s in sorted(results)},
        "promoted": sorted(promoted),
    }
    rows = "".join(
        f"| {s} | {r['version']} | {r['status']} | {r.get('patches', '')} | {s in promoted} |\n"
        for s, r in sorted(results.items())
    )
    create_markdown_artifact(
        key=artifact_key("patch-banks", artworks),
        markdown=(
            f"# Patch banks for {artworks}\n\n"
            "| style | version | status | patches | promoted |\n|---|---|---|---|---|\n"
            f"{rows}"
        ),
        description=f"style-swap patch banks of the artworks under {artworks}",
    )
    return summary
