"""``bdx demo``: a three-country region on loopback, end to end, in about a minute.

Steps: regional PKI (``bdx pki bootstrap``) and per-country rules; per node settings (SQLite and
gallery in the run directory), ``bdx db upgrade``, officer/operator/auditor users and a
synthetic fingerprint gallery; each node started as a real ``bdx serve``; local searches over
HTTP; signed cross-border hit/no-hit queries (hits, no-hits and a policy refusal); the exchange
log exported and verified with ``bdx audit``. Servers stop on success, error or Ctrl-C.
"""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import Progress

from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from node.cli._common import writable_folder
from node.demo.errors import DemoError
from node.demo.region import (
    FINGER,
    DemoNode,
    Synthetic,
    bootstrap_region,
    enrol_images,
    enrol_templates,
    make_synthetic,
    prepare_node,
    run_bdx,
    write_nodes,
)
from node.demo.servers import serving

console = Console(highlight=False)


def _post(node: DemoNode, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        node.api_url + path,
        json=body,
        headers={"Authorization": f"Bearer {node.tokens['officer']}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise DemoError(
            f"{node.country} {path} answered {response.status_code}: {response.text[:200]}",
            reason="api_error",
        )
    result: dict[str, Any] = response.json()
    return result


def _local_search(node: DemoNode, label: str, image: Path) -> tuple[bool, str]:
    """Search ``image`` at ``node``; returns (hit, rank-1 subject or "")."""
    data = base64.b64encode(image.read_bytes()).decode("ascii")
    out = _post(node, "/search/fingerprint", {"fingers": [{"position": FINGER, "image": data}]})
    verdict = "HIT" if out["hit"] else "NO HIT"
    console.print(
        f"  local search at {node.country} ({label}): {verdict} (gallery {out['gallery_size']}, "
        f"FPIR target {out['target_fpir']:g}: decided at FMR {out['threshold_fmr']:.1e}, "
        f"FPIR {out['fpir']:.2g})"
    )
    for c in out["candidates"][:3]:
        fmr = "-" if c["fmr"] is None else f"{c['fmr']:.1e}"
        console.print(f"    candidate {c['subject']}  score {c['score']:.3f}  FMR {fmr}")
    top = out["candidates"][0]["subject"] if out["candidates"] else ""
    return bool(out["hit"]), top


def _query(
    node: DemoNode, to: str, purpose: str, probe: FingerprintTemplate, label: str
) -> dict[str, Any]:
    body = {
        "peers": [to],
        "purpose": purpose,
        "modality": "fingerprint",
        "templates": [
            {
                "data": base64.b64encode(iso19794_2.encode(probe)).decode("ascii"),
                "finger_position": FINGER,
            }
        ],
        "case_ref": f"demo-{label}",
    }
    result: dict[str, Any] = _post(node, "/queries", body)["results"][0]
    return result


def _cross_border(
    nodes: dict[str, DemoNode],
    fingers: list[list[FingerprintTemplate]],
    hits: dict[str, dict[str, Any]],
) -> list[str]:
    """TH asks ID and MY; returns the outcomes seen, in order, and puts each peer's first hit
    result in ``hits``."""
    th = nodes["TH"]
    cases = [
        ("ID", "border_control", 1, "id-subject"),
        ("ID", "border_control", len(fingers) - 1, "unknown-person"),
        ("MY", "border_control", _first_my(fingers), "my-subject-wrong-purpose"),
        ("MY", "asylum", _first_my(fingers), "my-subject"),
    ]
    console.print("  TH asks ID and MY; each answer is the peer's signed reply (compact JWS):")
    outcomes = []
    for peer, purpose, finger, label in cases:
        r = _query(th, peer, purpose, fingers[finger][1], label)
        if r.get("reference"):
            hits.setdefault(peer, r)
        outcome = r.get("outcome") or r["status"]
        line = f"  TH -> {peer}  {purpose:<14} probe {label:<26} {outcome.upper()}"
        if r.get("reference"):
            line += f"  reference {r['reference']}"
        if r.get("reason") or r.get("detail"):
            line += f"  reason: {r.get('reason') or r.get('detail')}"
        console.print(line, soft_wrap=True)
        jws = r.get("reply_jws") or ""
        signed = f"{len(jws)} bytes, {jws[:24]}...{jws[-12:]}" if jws else "none"
        console.print(f"      signed reply: {signed}", soft_wrap=True)
        outcomes.append(f"{peer}:{purpose}:{outcome}")
    return outcomes


def _terms(node: DemoNode, peer: str) -> dict[str, Any]:
    """``peer``'s signed terms for ``node``, fetched and verified by ``node``; printed."""
    response = httpx.get(
        f"{node.api_url}/peers/{peer}/terms",
        headers={"Authorization": f"Bearer {node.tokens['officer']}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise DemoError(
            f"{node.country} terms of {peer} answered {response.status_code}: "
            f"{response.text[:200]}",
            reason="api_error",
        )
    answer: dict[str, Any] = response.json()
    terms = answer["terms"]
    quotas = ", ".join(
        f"{q['modality']} {q['used']} used of {q['limit']} today" for q in terms["quotas"]
    )
    console.print(
        f"  {node.country} reads {peer}'s signed terms: purposes {', '.join(terms['purposes'])}; "
        f"{quotas} (asking consumed none)",
        soft_wrap=True,
    )
    return answer


def _follow_up(nodes: dict[str, DemoNode], hit: dict[str, Any]) -> str:
    """ID's operator records that its examiner confirmed the hit TH got (formal channels),
    then TH asks ID for the outcome: signed by ID, verified by TH; returns the outcome."""
    th, id_ = nodes["TH"], nodes["ID"]
    reference = hit["reference"]
    response = httpx.put(
        f"{id_.api_url}/hits/{reference}/outcome",
        json={"outcome": "confirmed"},
        headers={"Authorization": f"Bearer {id_.tokens['operator']}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise DemoError(
            f"ID outcome of {reference} answered {response.status_code}: {response.text[:200]}",
            reason="api_error",
        )
    console.print(
        f"  ID's operator records the examiner's outcome of {reference}: confirmed",
        soft_wrap=True,
    )
    answer = _post(th, f"/queries/{hit['query_id']}/outcome", {})
    (result,) = answer["results"]
    outcome = str(result.get("outcome") or result["status"])
    console.print(
        f"  TH asks ID for the outcome of its hit: {outcome.upper()} (signed by ID, "
        f"{len(result.get('outcome_jws') or '')} bytes; no note, no examiner, no subject)",
        soft_wrap=True,
    )
    return outcome


def _first_my(fingers: list[list[FingerprintTemplate]]) -> int:
    return len(fingers) // 2


def _audit(nodes: dict[str, DemoNode]) -> None:
    for node in nodes.values():
        export = node.root / "audit-export.json"
        # The export covers the log up to its latest signed checkpoint: sign one now.
        run_bdx(["audit", "checkpoint", "--config", str(node.config)], f"{node.country} checkpoint")
        run_bdx(
            ["audit", "export", "--out", str(export), "--config", str(node.config)],
            f"{node.country} audit export",
        )
        out = run_bdx(
            ["audit", "verify", str(export), "--config", str(node.config)],
            f"{node.country} audit verify",
        )
        console.print(f"  {node.country}: {out.strip().splitlines()[-1] if out.strip() else 'ok'}")


def _build(run_dir: Path, subjects: int) -> tuple[dict[str, DemoNode], Synthetic]:
    console.rule("1. region")
    pki = bootstrap_region(run_dir)
    nodes = write_nodes(run_dir, pki)
    console.print(f"  PKI for {', '.join(nodes)} in {pki}; rules: MY answers asylum queries only")
    console.rule("2. nodes")
    synthetic = make_synthetic(run_dir, 3, subjects)
    half = subjects // 2
    with Progress(console=console) as progress:
        for node in nodes.values():
            prepare_node(node)
        fingers = synthetic.templates
        # ID holds fingers 0..half-1, MY fingers half..subjects-2; the last finger is nowhere.
        enrol_templates(
            nodes["ID"], [f"id-{i}" for i in range(half)], [f[0] for f in fingers[:half]], progress
        )
        my = range(half, subjects - 1)
        enrol_templates(nodes["MY"], [f"my-{i}" for i in my], [fingers[i][0] for i in my], progress)
        enrol_templates(
            nodes["TH"],
            [f"th-bg-{i}" for i in range(subjects)],
            synthetic.background,
            progress,
        )
        enrol_images(nodes["TH"], {f"th-{f}": synthetic.images[f][0] for f in (1, 2)}, progress)
    for node in nodes.values():
        console.print(
            f"  {node.country}: API {node.api_url}, peer listener {node.peer_url}, "
            f"users officer/operator/auditor, config {node.config}"
        )
    return nodes, synthetic


def demo(
    out: Annotated[
        Path | None, typer.Option(help="run directory (default: ./var/demo-<timestamp>)")
    ] = None,
    subjects: Annotated[
        int, typer.Option(min=4, max=100_000, help="synthetic subjects across ID and MY")
    ] = 2000,
    fast: Annotated[bool, typer.Option(help="a small gallery (100 subjects) for tests")] = False,
) -> None:
    """Run a three-country region (TH, ID, MY) on loopback end to end and print the results.

    The demo runs on its own settings (one config file per node): BDX_* variables of the
    calling shell are ignored, for this process and the nodes it starts."""
    started = time.monotonic()
    ignored = sorted(name for name in os.environ if name.startswith("BDX_"))
    for name in ignored:  # they would take priority over every node's config file
        del os.environ[name]
    if ignored:
        console.print(f"bdx demo: ignoring {', '.join(ignored)} (the demo brings its own settings)")
    if fast:
        subjects = 100
    run_dir = out or Path("var") / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    run_dir = run_dir.resolve()
    writable_folder(run_dir, mode=0o700)
    if any(run_dir.iterdir()):
        raise DemoError(f"run directory {run_dir} is not empty", reason="run_dir_not_empty")
    console.print(f"bdx demo: run directory {run_dir}")
    try:
        nodes, synthetic = _build(run_dir, subjects)
        console.rule("3. servers")
        with serving(nodes):
            console.print("  all nodes healthy (bdx serve)")
            console.rule("4. local search (officer, HTTP)")
            hit, top = _local_search(nodes["TH"], "enrolled th-1", synthetic.images[1][1])
            miss, _ = _local_search(nodes["TH"], "unknown person", synthetic.images[3][1])
            console.rule("5. cross-border queries")
            hits: dict[str, dict[str, Any]] = {}
            outcomes = _cross_border(nodes, synthetic.templates, hits)
            terms = _terms(nodes["TH"], "ID")
            follow_up = _follow_up(nodes, hits["ID"]) if "ID" in hits else "no hit at ID"
        console.rule("6. audit")
        _audit(nodes)
    except KeyboardInterrupt:
        console.print(f"interrupted; servers stopped; run directory {run_dir}")
        raise
    console.rule("result")
    console.print(
        f"local search: enrolled th-1 -> {'hit' if hit else 'no hit'} (rank 1: {top}); "
        f"unknown person -> {'hit' if miss else 'no hit'}"
    )
    console.print("cross-border: " + ", ".join(outcomes))
    console.print(f"demo finished in {time.monotonic() - started:.1f} s; run directory {run_dir}")
    expected = [
        "ID:border_control:hit",
        "ID:border_control:no_hit",
        "MY:border_control:refused",
        "MY:asylum:hit",
    ]
    if (hit, miss) != (True, False):
        raise DemoError(
            f"local search: expected a hit and a no-hit, got {hit} and {miss}",
            reason="local_search",
        )
    if top != "th-1":
        raise DemoError(f"local search ranked {top or 'nobody'} first", reason="local_search")
    if outcomes != expected:
        raise DemoError("unexpected results (see above)", reason="unexpected_results")
    if follow_up != "confirmed":
        raise DemoError(f"TH read the outcome of its hit as {follow_up}", reason="follow_up")
    used = {q["modality"]: q["used"] for q in terms["terms"]["quotas"]}
    if used != {"fingerprint": 2}:  # TH's two searches at ID
        raise DemoError(f"ID's terms count {used} searches by TH, not 2", reason="terms")
