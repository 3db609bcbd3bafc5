"""Stylize methods as plug-ins (runs/methods/), the run spec (runs/spec.py) and keys (runs/keys.py).

End to end with a toy method through the flow: tests/flows/test_plugin_method.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from infra.settings import Settings
from runs import methods
from runs.keys import IMAGE_SUFFIXES, artifact_key, catalog_prefix, is_image_key, output_key
from runs.methods.base import Method, Source
from runs.shard import should_compile
from runs.spec import RunSpec, StylizeParams
from styleops.errors import InvalidInputError

# Computed from the code before StylizeParams moved out of tasks/stylize.py (commit 0025f29):
# existing manifests and output keys carry these hashes, so they must never change.
PINNED_HASHES = [
    (StylizeParams(), "30dfcdf69b3aab13"),
    (StylizeParams(max_side=64), "40cd025bf5a85cbc"),
    (StylizeParams(method="multi-style"), "28678ed2dea89b14"),
    (StylizeParams(method="adain", alpha=0.5, palette=False), "58d80eede25c05db"),
    (StylizeParams(method="gatys", iterations=10, optimizer="adam", levels=2), "0d64b21ab3707bb2"),
    (StylizeParams(color="luminance", format="png", quality=80, max_side=None), "1f41a029a7399316"),
    (
        StylizeParams(method="swap", alpha=0.3, iterations=5, palette=False, normalise=False, swap_weight=1.0),
        "e173d597bcd8a081",
    ),  # fields a method does not use are not hashed; swap as it was before normalise and swap_weight
    # the palette (on by default) is hashed only when on: --no-palette keeps the keys made before it existed
    (StylizeParams(method="adain", alpha=0.5), "992dc982aea5edb5"),
    (StylizeParams(method="swap", normalise=False, swap_weight=1.0), "8fb2471cdf91a231"),
    (StylizeParams(method="swap"), "ee5529b9861f3282"),  # normalised matching, 30% swapped patches
]


ALL = (
    "per-style",
    "multi-style",
    "swap",
    "adain",
    "gatys",
    "upscale",
    "pix2pix",
    "cyclegan",
    "mixgan",
    "magenta",
    "recolour",
)


@pytest.mark.parametrize(("params", "expected"), PINNED_HASHES, ids=[h for _, h in PINNED_HASHES])
def test_params_hash_is_pinned(params: StylizeParams, expected: str) -> None:
    assert params.hash == expected


def test_the_registry_lists_the_methods_with_their_aliases() -> None:
    assert methods.names() == ALL
    assert {m.name: m.aliases for m in methods.all_methods()} == {
        "per-style": (),
        "multi-style": ("multi",),
        "swap": (),
        "adain": (),
        "gatys": (),
        "upscale": ("super-resolution", "sr"),
        "pix2pix": (),
        "cyclegan": (),
        "mixgan": (),
        "magenta": (),
        "recolour": (),
    }
    assert methods.get("multi") is methods.get("multi-style") and methods.get("multi").cli_name == "multi"
    assert [m.name for m in methods.all_methods() if m.takes_blend] == ["multi-style", "adain", "magenta", "recolour"]
    assert {m.name: m.hashed for m in methods.all_methods() if m.hashed} == {
        "adain": ("alpha", "palette", "scale"),
        "swap": ("palette", "scale", "normalise", "swap_weight"),
        "gatys": ("iterations", "optimizer", "levels"),
        "cyclegan": ("direction",),
        "magenta": ("alpha",),
        "recolour": ("strength",),
    }
    assert {m.name: m.family for m in methods.all_methods()} == {
        "per-style": "per-style",
        "multi-style": "multi-style",
        "swap": "inverse",
        "adain": "adain",
        "gatys": None,
        "upscale": "super-resolution",
        "pix2pix": "pix2pix",
        "cyclegan": "cyclegan",
        "mixgan": "mixgan",
        "magenta": None,
        "recolour": None,
    }
    for m in methods.all_methods():
        assert type(m).__module__ == "runs.methods." + m.name.replace("-", "_")  # one module per method


def test_an_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(
        InvalidInputError,
        match=(
            r"^method must be one of per-style, multi-style, swap, adain, gatys, upscale, pix2pix, cyclegan, mixgan, "
            r"magenta, recolour, got 'cartoon'$"
        ),
    ):
        methods.get("cartoon")
    assert methods.find("cartoon") is None
    with pytest.raises(InvalidInputError, match="method must be one of per-style, multi-style"):
        RunSpec.create("demo", "monet", method="cartoon").check()


def test_register_refuses_a_taken_name_or_alias() -> None:
    class Clash(Method):
        name = "multi"

        def resolve(self, style, version, model=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def build(self, source, params, device, settings, batch_size=None, on_iteration=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(ValueError, match="method name multi is taken"):
        methods.register(Clash())
    assert methods.names() == ALL


def test_a_source_survives_json() -> None:
    source = Source(
        family="adain",
        name="default",
        version="v0001",
        blend={"monet": 0.75, "hoitsu": 0.25},
        artworks={"monet": ("artwork/monet/a.jpg", "artwork/monet/b.jpg"), "hoitsu": ("artwork/hoitsu/h.png",)},
    )
    d = json.loads(json.dumps(source.to_dict()))
    assert (
        Source.from_dict(d) == source
        and Source.coerce(d) == source
        and Source.coerce(source) is source
        and Source.coerce(None) is None
    )
    assert Source(family="per-style", name="monet", version="v0003").to_dict() == {
        "family": "per-style",
        "name": "monet",
        "version": "v0003",
    }
    with pytest.raises(InvalidInputError, match="no field colour"):
        Source.from_dict({"family": "gatys", "colour": "red"})


def test_run_spec_is_immutable_and_checked() -> None:
    spec = RunSpec.create("catalog/demo/", "wave=0.7,udnie=0.3", method="multi", format="PNG", shard_size=8)
    assert (spec.method, spec.params.method, spec.params.format, spec.prefix) == (
        "multi-style",
        "multi-style",
        "png",
        "catalog/demo/",
    )
    assert spec.check() is spec
    with pytest.raises(AttributeError):
        spec.style = "other"  # type: ignore[misc]
    for kwargs, message in [
        ({"max_side": 8}, "max_side must be >= 16"),
        ({"color": "sepia"}, "colour preservation must be one of none, luminance, histogram"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"levels": 5}, "gatys needs iterations >= 1"),
        ({"shard_size": 0}, "shard_size must be >= 1"),
        ({"metrics_sample": 0.0}, r"metrics_sample must be in \(0, 1\], got 0.0"),
        ({"metrics_sample": 1.5}, r"metrics_sample must be in \(0, 1\], got 1.5"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            RunSpec.create("demo", "monet", **kwargs).check()
    with pytest.raises(ValueError, match="a catalog is a set name"):
        RunSpec.create("catalog/", "monet").check()


def test_the_flow_takes_the_spec_as_json_as_a_deployment_gives_it() -> None:
    from flows.stylize_catalog import stylize_catalog

    given = {"catalog": "demo", "style": "a=1,b=1", "shard_size": 8, "params": {"method": "multi", "format": "PNG"}}
    spec = stylize_catalog.validate_parameters({"spec": given})["spec"]
    cli = RunSpec.create("demo", "a=1,b=1", method="multi", format="png", shard_size=8)
    assert spec == cli and spec.params.hash == cli.params.hash
    assert (spec.method, spec.params.format) == ("multi-style", "png")
    schema = stylize_catalog.parameters.model_dump()
    assert schema["required"] == ["spec"] and "StylizeParams" in schema["definitions"]


def test_keys() -> None:
    params = StylizeParams(max_side=64)
    assert catalog_prefix("demo") == catalog_prefix("catalog/demo/") == "catalog/demo/"
    assert (
        output_key("catalog/demo/a/b.png", "demo", "a=0.7,b=0.3", "collection/v0002", params)
        == f"stylized/demo/a-0.7+b-0.3/collection/v0002/{params.hash[:8]}/a/b.png.jpg"
    )
    assert all(is_image_key("x/Y" + s.upper()) for s in IMAGE_SUFFIXES) and not is_image_key("catalog/demo/README.txt")
    assert artifact_key("stylize", "a=0.700,b=0.300") == "stylize-a-0-700-b-0-300"
    assert (
        artifact_key("audit", "--") == "audit-all" and artifact_key("patch-banks", "artwork/") == "patch-banks-artwork"
    )
    assert artifact_key("gate", "per-style-monet-") == "gate-per-style-monet"


@pytest.mark.parametrize(
    ("env", "device", "images", "expected"),
    [
        ({}, "cuda", 30_000, True),  # 'auto' by default: a run big enough to pay for the compile
        ({}, "cuda", 29_999, False),
        ({}, "cpu", 10**7, False),  # only on CUDA
        ({"STYLEOPS_COMPILE_MIN_IMAGES": "5"}, "cuda", 5, True),
        ({"STYLEOPS_COMPILE": "false"}, "cuda", 10**7, False),  # the way out
        ({"STYLEOPS_COMPILE": "true"}, "cuda", 1, True),
        ({"STYLEOPS_COMPILE": "true"}, "cpu", 1, False),
    ],
)
def test_compile_is_decided_by_device_setting_and_run_size(
    env: dict[str, str], device: str, images: int, expected: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("STYLEOPS_COMPILE", "STYLEOPS_COMPILE_MIN_IMAGES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert should_compile(Settings(home=tmp_path), torch.device(device), images) is expected


def test_a_compile_setting_that_is_not_a_boolean_or_auto_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STYLEOPS_COMPILE", "sometimes")
    with pytest.raises(ValidationError, match="compile"):
        Settings(home=tmp_path)


@pytest.mark.parametrize(
    "params",
    [
        StylizeParams(method="adain", palette=False, alpha=0.5),
        StylizeParams(method="swap", palette=False),
        StylizeParams(method="swap"),
        StylizeParams(method="gatys", iterations=7, optimizer="adam", levels=2, color="luminance"),
        StylizeParams(method="cyclegan", direction="BtoA", format="png", upscale="super-resolution/x4/v0001"),
        StylizeParams(method="recolour", strength=0.25, max_side=None),
    ],
    ids=["adain-no-palette", "swap-no-palette", "swap", "gatys", "cyclegan", "recolour"],
)
def test_the_hashed_dict_gives_back_the_params_the_shard_runs(params: StylizeParams) -> None:
    """A manifest row's params_json is `to_dict()` (what is hashed; the audit's repair reads it back);
    a knob left out of it at its unhashed value (--no-palette) must come back as that value, not the
    default: the output is what its key says."""
    from runs.spec import params_from_dict

    back = params_from_dict(params.to_dict())
    assert back.to_dict() == params.to_dict() and back.hash == params.hash
    for name in methods.get(params.method).hashed:
        assert getattr(back, name) == getattr(params, name)


@pytest.mark.parametrize(
    "params",
    [
        StylizeParams(method="adain", palette=False, alpha=0.5),
        StylizeParams(method="swap", palette=False),
        StylizeParams(method="gatys", iterations=7, optimizer="adam", levels=2, color="luminance"),
        StylizeParams(method="cyclegan", direction="BtoA", format="png", upscale="super-resolution/x4/v0001"),
        StylizeParams(alpha=0.5, iterations=3),  # knobs per-style does not read (nor hash)
    ],
    ids=["adain-no-palette", "swap-no-palette", "gatys", "cyclegan", "per-style-unread-knobs"],
)
def test_a_shard_job_travels_pickled_with_the_params_the_shard_reads(params: StylizeParams) -> None:
    """The flow's ShardJob is the shard task's one argument, pickled to a Dask worker: it comes back
    equal, hash and all. The StylizeParams travel as they are (not `to_dict()` read back): what the
    shard and the method read of them is what `params_from_dict(params.to_dict())` gave before."""
    import pickle

    import cloudpickle

    from runs.shard import ShardJob
    from runs.spec import params_from_dict

    source = Source(family="adain", name="default", version="v0001", blend={"monet": 1.0}, artworks={"monet": ("a",)})
    job = ShardJob(
        "r-s0001", [("catalog/demo/a.jpg", '"e1"', 123)], "r", "catalog/demo/", "monet", "v0001", params,
        batch_size=4, source=source, overwrite={"stylized/demo/a.jpg": '"e2"'}, run_images=65,
    )  # fmt: skip
    for back in (pickle.loads(pickle.dumps(job)), cloudpickle.loads(cloudpickle.dumps(job))):
        assert back == job and back.params.hash == params.hash and back.params.to_dict() == params.to_dict()
    before = params_from_dict(params.to_dict())
    shared = ("method", "max_side", "format", "quality", "color", "upscale")
    assert [getattr(job.params, n) for n in shared] == [getattr(before, n) for n in shared]
    method = methods.get(params.method)
    assert method.options_of(job.params) == method.options_of(before)


def test_the_training_summary_of_a_model_registered_without_a_step_has_no_losses() -> None:
    """`train-style --init magenta` (the prediction, no step) registers a model with no losses:
    its summary says '-' instead of failing after the model was promoted."""
    from flows.train_style import summary_markdown

    untrained = summary_markdown("monet", {"version": "v0001", "metrics": {"steps": 0, "seconds": 1.5}}, True)
    assert untrained.splitlines()[-1] == "| 0 | 1.5 | - | - | - | True |"
    metrics = {"steps": 5, "seconds": 9.0, "content": 3.04, "style": 4.0, "tv": 0.5}
    trained = summary_markdown("monet", {"version": "v0002", "metrics": metrics}, False)
    assert trained.splitlines()[-1] == "| 5 | 9.0 | 3.0 | 4.0 | 0.50 | False |"
