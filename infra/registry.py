"""Model registry: safetensors weights and JSON cards in the store, a Delta table of events.

Layout (DESIGN.md): every name of a family lives under the family's root, `models/<family>/`
for the networks and `banks/` for the style-swap patch banks (family "bank", named by style):
    <root><name>/<version>/weights.safetensors   claimed first, with If-None-Match
    <root><name>/<version>/card.json             written last: a version exists once its card does
    <root><name>/PRODUCTION                      {"version", "promoted_at", "reason"}, If-Match
    registry/                                    Delta table: "registered", "promoted" and
                                                 "gate-passed"/"gate-refused" events
e.g. models/per-style/monet/v0001/weights.safetensors, banks/monet/v0001/card.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import pandas as pd
import pyarrow as pa
import safetensors

from infra.delta import StoreDeltaTable
from infra.store import IntegrityError, ObjectInfo, ObjectNotFoundError, ObjectStore, PreconditionFailedError
from styleops import families

BANK = "bank"  # the patch banks of style swap: versioned like models, stored under banks/
FAMILIES = (*families.names(), BANK)  # styleops.families, and the banks
_ROOTS = {BANK: "banks/"}  # families stored outside models/<family>/
PRODUCTION_ALIASES = (None, "production")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"v\d{4,}")
_MAX_CLAIMS = 1000

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event", pa.string(), nullable=False),
        pa.field("family", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("sha256", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("metrics_json", pa.string()),
        pa.field("card_json", pa.string()),
        pa.field("reason", pa.string()),
    ]
)


class RegistryError(Exception):
    """Base class of registry errors (bad names, integrity failures)."""


class ModelNotFoundError(RegistryError, KeyError):
    """No such model, version or production pointer."""

    def __str__(self) -> str:  # KeyError's str is the message's repr: say the message
        return str(self.args[0]) if self.args else "no such model"


class UnsafeWeightsError(RegistryError):
    """Bytes that are not a valid safetensors file (a pickle, say): never loaded."""


class WeightsIntegrityError(RegistryError):
    """Weights whose sha256 differs from the one in their card."""


class PromotionConflictError(RegistryError):
    """The PRODUCTION pointer changed while promoting: re-evaluate, then promote again."""


class ModelCard(TypedDict, total=False):
    """A version's card.json. The registry writes the identity (the first seven keys) over whatever
    the trainer gave; the rest is the trainer's: what it is (architecture and its config), how it
    was made (train config, data sha256s, code version, device, loss curve, rollbacks) and how it
    scored (metrics, the quality gate's or collapse check's numbers). Families add their own keys
    (a multi-style model's `styles`, a bank's `artworks`, a translation model's
    `translation_config`)."""

    family: str
    name: str
    version: str  # v0001, ...
    weights_sha256: str
    weights_size: int  # bytes
    created_at: str  # ISO 8601, UTC
    imported_from: str  # `styleops models import`: the file's name
    architecture: str  # the class `styleops.io.serialize` rebuilds
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data: dict[str, Any]
    code_version: str
    device: str
    loss_curve: list[dict[str, float]]
    rollback_log: list[dict[str, Any]]
    metrics: dict[str, Any]
    gate: dict[str, Any]


@dataclass(frozen=True)
class ModelVersion:
    family: str
    name: str
    version: str
    weights_key: str
    card_key: str
    sha256: str
    size: int
    created_at: datetime


class ModelRegistry:
    """Versioned models (and patch banks) of the families in FAMILIES, in one bucket."""

    def __init__(self, store: ObjectStore, *, table_prefix: str = "registry") -> None:
        self.store = store
        self._events = StoreDeltaTable(store, table_prefix, EVENTS_SCHEMA)

    # ---- writes -------------------------------------------------------------------------------
    def register(self, family: str, name: str, weights: bytes, card: Mapping[str, Any]) -> ModelVersion:
        """Store `weights` as the next version (v0001, v0002, ...) with `card` plus its identity."""
        base = _model_prefix(family, name)
        check_safetensors(weights)
        _to_json(card)  # fail before claiming a version
        sha256 = hashlib.sha256(weights).hexdigest()
        version = self._claim_version(base, weights)
        created_at = datetime.now(UTC)
        full_card: ModelCard = {  # type: ignore[typeddict-unknown-key]
            **card,
            "family": family,
            "name": name,
            "version": version,
            "weights_sha256": sha256,
            "weights_size": len(weights),
            "created_at": created_at.isoformat(),
        }
        card_key = _card_key(base, version)
        self.store.put(card_key, _to_json(full_card), content_type="application/json", if_none_match=True)
        self._append_event("registered", family, name, version, card=full_card, at=created_at)
        return _model_version(family, name, full_card)

    def promote(self, family: str, name: str, version: str, *, reason: str = "") -> None:
        """Point PRODUCTION at `version`; PromotionConflictError if another promotion got there first."""
        card = self.card(family, name, version)
        key = _model_prefix(family, name) + "PRODUCTION"
        current = self._pointer(key)
        promoted_at = datetime.now(UTC)
        body = _to_json({"version": version, "promoted_at": promoted_at.isoformat(), "reason": reason})
        try:
            if current is None:
                self.store.put(key, body, content_type="application/json", if_none_match=True)
            else:
                self.store.put(key, body, content_type="application/json", if_match=current[1])
        except PreconditionFailedError as exc:
            raise PromotionConflictError(f"{family}/{name}: PRODUCTION changed while promoting {version}") from exc
        self._append_event("promoted", family, name, version, card=card, at=promoted_at, reason=reason)

    def record_gate(
        self, family: str, name: str, version: str, *, passed: bool, numbers: dict[str, Any], reason: str
    ) -> None:
        """Record a quality-gate decision on `version` (numbers: the losses compared) in the table."""
        card = self.card(family, name, version)
        self._append_event(
            "gate-passed" if passed else "gate-refused",
            family,
            name,
            version,
            card=card,
            at=datetime.now(UTC),
            reason=reason,
            metrics=numbers,
        )

    # ---- reads --------------------------------------------------------------------------------
    def names(self, family: str) -> list[str]:
        """Model names of `family` with at least one version."""
        prefix = family_prefix(family)
        cards = (info.key for info in self.store.list(prefix) if info.key.endswith("/card.json"))
        return sorted({key[len(prefix) :].split("/")[0] for key in cards})

    def versions(self, family: str, name: str) -> list[ModelVersion]:
        """Registered versions, oldest first."""
        return [_model_version(family, name, self.card(family, name, v)) for v in self._version_ids(family, name)]

    def version_ids(self, family: str, name: str) -> list[str]:
        """The registered versions' ids ('v0001', ...), oldest first: one listing, no card read."""
        return self._version_ids(family, name)

    def card(self, family: str, name: str, version: str) -> ModelCard:
        """The stored card of a version."""
        key = _card_key(_model_prefix(family, name), _check_version(version))
        try:
            return self.store.get_json(key)
        except ObjectNotFoundError as exc:
            raise ModelNotFoundError(f"no version {version} of {family}/{name}") from exc

    def weights_bytes(self, family: str, name: str, version: str) -> bytes:
        """The weights of a version, checked to be safetensors and to match the card's sha256."""
        card = self.card(family, name, version)
        key = _weights_key(_model_prefix(family, name), version)
        try:
            data = self.store.get_bytes(key)
        except ObjectNotFoundError as exc:
            raise ModelNotFoundError(f"{self.store.uri(key)} is missing") from exc
        except IntegrityError as exc:
            raise WeightsIntegrityError(str(exc)) from exc
        check_safetensors(data)
        sha256 = hashlib.sha256(data).hexdigest()
        if sha256 != card["weights_sha256"]:
            recorded = card["weights_sha256"]
            raise WeightsIntegrityError(f"{self.store.uri(key)}: sha256 {sha256} but the card says {recorded}")
        return data

    def production(self, family: str, name: str) -> str | None:
        """The promoted version, None if none was promoted."""
        pointer = self._pointer(_model_prefix(family, name) + "PRODUCTION")
        return None if pointer is None else pointer[0]["version"]

    def resolve(self, family: str, name: str, version: str | None = None) -> str:
        """None or "production" -> the promoted version; "latest" -> the newest; "vNNNN" -> checked to exist.
        ModelNotFoundError otherwise, naming what there is: the family's models for an unknown
        name, the model's versions for an unknown version or a model never promoted."""
        if version in PRODUCTION_ALIASES:
            promoted = self.production(family, name)
            if promoted is not None:
                return promoted
        elif version != "latest":
            try:
                self.card(family, name, version)  # one GET (a shard resolves its version this way)
                return version
            except ModelNotFoundError:
                pass  # say what there is, below
        ids = self._version_ids(family, name)
        if not ids:
            known = self.names(family)
            raise ModelNotFoundError(
                f"no {family} model named {name!r} (no versions); "
                + (f"{family} models: {', '.join(known)}" if known else f"no {family} model yet")
            )
        if version == "latest":
            return ids[-1]
        if version in PRODUCTION_ALIASES:
            raise ModelNotFoundError(
                f"{family}/{name} has no production version (versions: {', '.join(ids)}): "
                "promote one, or ask for 'latest' or a version"
            )
        if version not in ids:
            raise ModelNotFoundError(f"no version {version} of {family}/{name}; it has {', '.join(ids)}")
        return version

    def events(self) -> pd.DataFrame:
        """The registry table: one row per registration and promotion, oldest first."""
        return self._events.read_arrow().sort_by("created_at").to_pandas()

    # ---- helpers ------------------------------------------------------------------------------
    def _version_ids(self, family: str, name: str) -> list[str]:
        """Versions with a card (complete registrations), oldest first."""
        base = _model_prefix(family, name)
        return _sorted_versions(self.store.list(base), base, suffix="/card.json")

    def _claim_version(self, base: str, weights: bytes) -> str:
        """Write the weights under the first free version number; a lost race moves on to the next."""
        taken = _sorted_versions(self.store.list(base), base)
        number = int(taken[-1][1:]) if taken else 0
        for _ in range(_MAX_CLAIMS):
            number += 1
            version = f"v{number:04d}"
            try:
                key = _weights_key(base, version)
                self.store.put(key, weights, content_type="application/octet-stream", if_none_match=True)
                return version
            except PreconditionFailedError:
                continue
        raise RegistryError(f"no free version under {base} after {_MAX_CLAIMS} tries")

    def _pointer(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The PRODUCTION document and its etag, None if absent."""
        try:
            result = self.store.get(key)
        except ObjectNotFoundError:
            return None
        return json.loads(result.data), result.etag

    def _append_event(
        self,
        event: str,
        family: str,
        name: str,
        version: str,
        *,
        card: ModelCard,
        at: datetime,
        reason: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        row = {
            "event": event,
            "family": family,
            "name": name,
            "version": version,
            "sha256": card["weights_sha256"],
            "size": card["weights_size"],
            "created_at": at,
            "metrics_json": json.dumps(card.get("metrics", {}) if metrics is None else metrics, sort_keys=True),
            "card_json": json.dumps(card, sort_keys=True) if event == "registered" else None,
            "reason": reason,
        }
        self._events.append(pa.Table.from_pylist([row], schema=EVENTS_SCHEMA))


def check_safetensors(data: bytes) -> None:
    """Raise UnsafeWeightsError unless `data` is a complete safetensors file with tensors.

    A pickle or a torch.save zip (a .pt/.pth/.ckpt checkpoint) is named as such and never parsed."""
    head = bytes(data[:4])
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5):
        kind = (
            "a zip archive (a torch.save checkpoint holding pickles)" if head.startswith(b"PK") else "a Python pickle"
        )
        raise UnsafeWeightsError(
            f"not a safetensors file: it is {kind}; pickles can run code when loaded and are refused "
            "(store weights as .safetensors)"
        )
    try:
        tensors = safetensors.deserialize(data)
    except safetensors.SafetensorError as exc:
        raise UnsafeWeightsError(f"not a safetensors file: {exc}") from exc
    if not tensors:
        raise UnsafeWeightsError("safetensors file holds no tensors")


def family_prefix(family: str) -> str:
    """The key prefix under which the names of `family` live: `banks/` or `models/<family>/`."""
    return _ROOTS.get(_check_family(family), f"models/{family}/")


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise RegistryError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")
    return family


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(f"model name must match {_NAME.pattern}, got {name!r}")
    return name


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise RegistryError(f"version must look like v0001, got {version!r}")
    return version


def _model_prefix(family: str, name: str) -> str:
    return f"{family_prefix(family)}{_check_name(name)}/"


def _weights_key(base: str, version: str) -> str:
    return f"{base}{version}/weights.safetensors"


def _card_key(base: str, version: str) -> str:
    return f"{base}{version}/card.json"


def _sorted_versions(infos: Iterable[ObjectInfo], base: str, *, suffix: str = "") -> list[str]:
    """Distinct version directories among objects listed under `base` (`<base><version>/<file>`,
    those with `suffix`), numerically."""
    found = set()
    for info in infos:
        parts = info.key[len(base) :].split("/") if info.key.startswith(base) else []
        if len(parts) == 2 and _VERSION.fullmatch(parts[0]) and info.key.endswith(suffix):
            found.add(parts[0])
    return sorted(found, key=lambda v: int(v[1:]))


def _model_version(family: str, name: str, card: ModelCard) -> ModelVersion:
    base = _model_prefix(family, name)
    version = card["version"]
    return ModelVersion(
        family=family,
        name=name,
        version=version,
        weights_key=_weights_key(base, version),
        card_key=_card_key(base, version),
        sha256=card["weights_sha256"],
        size=card["weights_size"],
        created_at=datetime.fromisoformat(card["created_at"]),
    )


def _to_json(obj: Any) -> bytes:
    try:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"card is not JSON: {exc}") from exc
