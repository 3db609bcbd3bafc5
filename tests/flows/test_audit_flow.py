"""The audit-manifests flow under the Prefect test harness: tasks -> HTML report -> artifact.

Hand-written manifest rows for the example catalog (no training): the flow's wiring, the report
and the artifact are under test here; the checks themselves in tests/integration/test_audit.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from prefect.artifacts import Artifact
from safetensors.torch import save as save_safetensors

from flows.audit import audit_manifests
from runs import context
from runs.keys import artifact_key
from styleops.io.images import decode_image, encode_image
from tests.flows.conftest import CATALOG_PREFIX, PipelineEnv

pytestmark = [pytest.mark.integration, pytest.mark.flow]

STYLE, PH = "monet", "0123abcd4567ef89"
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_audit_flow_writes_the_report_and_counts_critical_findings(pipeline_env: PipelineEnv, tmp_path: Path) -> None:
    env = pipeline_env
    reg = context.registry()
    reg.register("per-style", STYLE, save_safetensors({"w": torch.zeros(2)}), {})
    reg.promote("per-style", STYLE, "v0001")
    etags = {i.key: i.etag for i in env.store.list(CATALOG_PREFIX)}
    rows = []
    for n, key in enumerate(env.catalog_keys):  # day 1: three images, day 2: three more
        out = f"stylized/demo/{STYLE}/v0001/{PH[:8]}/{key.rsplit('/', 1)[1]}"
        data = encode_image(decode_image(env.store.get_bytes(key)).pixels[:, ::8, ::8].flip(0).contiguous(), "jpeg")
        env.store.put(out, data)
        at = T0 + timedelta(days=n // 3)
        rows.append(
            {
                "run_id": "r1",
                "catalog": CATALOG_PREFIX,
                "image_key": key,
                "input_etag": etags[key],
                "style": STYLE,
                "method": "per-style",
                "model_version": "v0001",
                "params_hash": PH,
                "status": "ok",
                "output_key": out,
                "output_sha256": hashlib.sha256(data).hexdigest(),
                "bytes_out": len(data),
                "style_loss": 10.0 + n,
                "content_loss": 1.0,
                "started_at": at,
                "finished_at": at,
            }
        )
    context.manifest().append(rows)
    gone = rows[0]["output_key"]
    env.store.delete(gone)
    env.store.put("stylized/demo/stray.jpg", b"nobody's")

    out_dir = tmp_path / "audit"
    result = audit_manifests(catalog="demo", styles=[STYLE], out_dir=str(out_dir))
    assert (result["critical"], result["warnings"]) == (1, 1)
    assert sorted((f["kind"], f["severity"], f.get("output_key")) for f in result["findings"]) == [
        ("missing_output", "critical", gone),
        ("orphan", "warning", "stylized/demo/stray.jpg"),
    ]
    assert result["counts"] == {
        "missing_output": 1,
        "tampered_output": 0,
        "uncovered": 0,
        "duplicate": 0,
        "outlier": 0,
        "stale": 0,
        "orphan": 1,
    }
    assert result["report"] == str(out_dir / "index.html")

    page = Path(result["report"]).read_text(encoding="utf-8")
    assert "1 critical, 1 warnings" in page and gone in page and "stylized/demo/stray.jpg" in page
    assert page.count("data:image/jpeg;base64,") == 2 * 5  # five intact samples, input and output each
    assert (
        "<svg" in page and "2026-03-01" in page and "2026-03-02" in page and page.count("<rect") == 2
    )  # images per day
    assert f"<td>{STYLE}</td><td>v0001</td><td>6</td><td>0</td>" in page  # coverage
    sheet = decode_image((out_dir / "contact_sheet.png").read_bytes()).pixels
    assert tuple(sheet.shape) == (3, 4 + 5 * 132, 4 + 2 * 132)
    saved = json.loads((out_dir / "findings.json").read_text(encoding="utf-8"))
    assert saved["findings"] == result["findings"] and saved["counts"]["critical"] == 1

    assert (
        artifact_key("audit", "demo") == "audit-demo"
        and artifact_key("audit", "20260301T120000Z-AB12cd") == "audit-20260301t120000z-ab12cd"
    )
    artifact = Artifact.get("audit-demo")
    assert (
        artifact is not None
        and "| missing_output | critical | 1 |" in artifact.data
        and "| orphan | warning | 1 |" in artifact.data
    )

    assert audit_manifests(run_id="nothing", out_dir=str(tmp_path / "empty"))["findings"] == [
        {
            "kind": "orphan",
            "severity": "warning",
            "output_key": "stylized/demo/stray.jpg",
            "detail": "no manifest row names this object",
        }
    ]
    with pytest.raises(ValueError):
        audit_manifests(styles=[STYLE], out_dir=str(tmp_path / "bad"))
