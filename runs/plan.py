"""The plan of a stylize run: list the catalog, drop what the manifest says is done (and, unless
asked, what failed for good), check done outputs when repairing, cut the rest into shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runs import context
from runs.keys import catalog_prefix, is_image_key
from runs.outputs import inspect_outputs
from styleops.errors import InvalidInputError

Item = tuple[str, str, int]  # (key, etag, size) of one catalog image, as the listing gave it


@dataclass(frozen=True)
class Plan:
    """What a run has to do. `shards`: lists of items; with a repair, `repair` (the outputs to
    re-render), `missing`, `tampered` and `overwrite`: per shard, {output_key: etag} of the
    tampered outputs of this model version, the only keys its shard may overwrite (If-Match)."""

    catalog: str
    total: int
    done: int
    known_bad: int
    todo: int
    stale: int
    ignored: int
    shards: list[list[Item]]
    repair: int | None = None
    missing: int | None = None
    tampered: int | None = None
    overwrite: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The plan as the plan task returns it (repair fields only for a repair)."""
        d: dict[str, Any] = {
            "catalog": self.catalog,
            "total": self.total,
            "done": self.done,
            "known_bad": self.known_bad,
            "todo": self.todo,
            "stale": self.stale,
            "ignored": self.ignored,
            "shards": self.shards,
        }
        if self.repair is not None:
            d.update(repair=self.repair, missing=self.missing, tampered=self.tampered, overwrite=self.overwrite)
        return d


def check_catalog(catalog: str) -> str:
    """catalog/<set>/ when something is stored under it; InvalidInputError naming the catalogs
    that exist otherwise (a typo in a catalog's name is not an empty catalog)."""
    prefix = catalog_prefix(catalog)
    st = context.store()
    if next(iter(st.list(prefix, page_size=1)), None) is None:
        known = st.folders("catalog/")
        raise InvalidInputError(
            f"no catalog {prefix.split('/')[1]!r}: nothing under {st.uri(prefix)}; "
            + (f"catalogs: {', '.join(known)}" if known else "no catalog yet")
            + " (`styleops upload <folder> catalog/<name>/`)"
        )
    return prefix


def plan_catalog(
    catalog: str,
    style: str,
    model_version: str,
    params_hash: str,
    shard_size: int,
    retry_failed: bool = False,
    still_current: Sequence[str] = (),
    repair: bool = False,
    log: context.Logger = context.log,
) -> Plan:
    """List the catalog, drop images already `ok` for this style/model/params with the same etag
    (or `ok` for a version in `still_current`, whose outputs are bit-identical), and, unless
    `retry_failed`, those that failed for good (undecodable or too large); cut the rest into
    shards of `shard_size` [(key, etag, size), ...]. "stale" counts the images to do that have
    an `ok` output from another model version (what a promotion makes the next run redo).

    With `repair`, the outputs of the images it would skip as done are checked as the audit
    checks them (downloaded, size and sha256 against their latest `ok` row): the missing and
    tampered ones go back into the shards (after the rest). The plan then also has "repair"
    (their number), "missing", "tampered" and "overwrite": per shard {output_key: etag} of the
    tampered outputs of this model version, the only keys its shard may overwrite (If-Match).
    """
    prefix = catalog_prefix(catalog)
    table = context.manifest()
    which = {"catalog": prefix, "style": style, "model_version": model_version, "params_hash": params_hash}
    done: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    for version in (*reversed(tuple(still_current)), model_version):  # oldest first: newer rows win
        if repair:
            latest = table.completed_rows(**{**which, "model_version": version})
            rows.update(latest)
            done.update((key, row["input_etag"]) for key, row in latest.items())
        else:
            done.update(table.completed(**{**which, "model_version": version}))
    previous = table.ok_elsewhere(
        catalog=prefix, style=style, params_hash=params_hash, exclude=(model_version, *still_current)
    )
    known_bad = {} if retry_failed else table.failed_permanently(**which)
    shards: list[list[Item]] = [[]]
    suspects: list[Item] = []  # done, but their outputs are checked first (repair)
    total = skipped_done = skipped_bad = ignored = stale = 0
    for info in context.store().list(prefix):
        if not is_image_key(info.key):
            ignored += 1
            continue
        total += 1
        if done.get(info.key) == info.etag:
            skipped_done += 1
            if repair:
                suspects.append((info.key, info.etag, info.size))
            continue
        if known_bad.get(info.key) == info.etag:
            skipped_bad += 1
            continue
        stale += info.key in previous
        if len(shards[-1]) >= shard_size:
            shards.append([])
        shards[-1].append((info.key, info.etag, info.size))
    if repair:
        broken, overwrite = _broken_outputs([rows[key] for key, _, _ in suspects], model_version)
        missing = sum(kind == "missing_output" for kind in broken.values())
        overwrites: list[dict[str, str]] = [{} for _ in shards]
        for item in suspects:
            if item[0] not in broken:
                continue
            skipped_done -= 1
            if len(shards[-1]) >= shard_size:
                shards.append([])
                overwrites.append({})
            shards[-1].append(item)
            if item[0] in overwrite:
                overwrites[-1].update([overwrite[item[0]]])
        overwrites = [o for o, s in zip(overwrites, shards, strict=True) if s]
    shards = [s for s in shards if s]
    todo = total - skipped_done - skipped_bad
    log.info(
        "catalog %s: %d images, %d already done, %d known bad, %d to do (%d stale: made by another model version) "
        "in %d shards (%d non-image keys ignored)",
        prefix,
        total,
        skipped_done,
        skipped_bad,
        todo,
        stale,
        len(shards),
        ignored,
    )
    plan = Plan(prefix, total, skipped_done, skipped_bad, todo, stale, ignored, shards)
    if repair:
        log.info(
            "repair: %d of the %d done outputs checked are to re-render: "
            "%d missing, %d tampered (%d overwritten if unchanged since)",
            len(broken),
            len(suspects),
            missing,
            len(broken) - missing,
            len(overwrite),
        )
        plan = replace(plan, repair=len(broken), missing=missing, tampered=len(broken) - missing, overwrite=overwrites)
    return plan


def _broken_outputs(
    rows: list[dict[str, Any]], model_version: str
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Check the outputs of `ok` rows as the audit does: {image_key: "missing_output" |
    "tampered_output"} of the broken ones, and {image_key: (output_key, etag)} of the tampered
    ones of `model_version` (an older, still-current version's output is not this run's to
    overwrite: its re-render goes to this version's key)."""
    broken: dict[str, str] = {}
    overwrite: dict[str, tuple[str, str]] = {}
    for row, (found, etag) in zip(rows, inspect_outputs(context.store(), rows), strict=True):
        if found is None:
            continue
        broken[row["image_key"]] = found["kind"]
        if found["kind"] == "tampered_output" and etag is not None and row["model_version"] == model_version:
            overwrite[row["image_key"]] = (row["output_key"], etag)
    return broken, overwrite
