"""``bdx eval face``: face template accuracy (FTE, EER, TAR at FAR, rank-1) and speed."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from matcher.face.params import CSLS_K, DETECTORS, MULTIPLE_CENTRAL, MULTIPLE_POLICIES


def face(
    dataset: Path = typer.Option(
        ..., "--dataset", help="Folder laid out as DIR/<identity>/<image> (e.g. LFW, ORL)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    whole_image_fallback: bool = typer.Option(
        False,
        "--whole-image-fallback",
        help="When no face is detected, treat the whole image as the face (cropped sets: ORL).",
    ),
    limit_identities: int | None = typer.Option(
        None, "--limit-identities", min=1, help="Use only the first N identities (sorted)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes (default: one per CPU core)."
    ),
    detector: str = typer.Option("hog", "--detector", help=f"One of {', '.join(DETECTORS)}."),
    multiple_faces: str = typer.Option(
        MULTIPLE_CENTRAL,
        "--multiple-faces",
        help="central: of the faces of comparable size use the one nearest the image centre "
        "(datasets centre the labelled person); largest: the largest; refuse: count as FTE.",
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="Per-image outcomes (.npz): reused when the file exists, written when it does not.",
    ),
    refresh: bool = typer.Option(
        False,
        "--refresh",
        help="With --cache: re-extract only images not enrolled or with several faces.",
    ),
    no_quality_checks: bool = typer.Option(
        False, "--no-quality-checks", help="Enrol faces that fail the quality checks."
    ),
    diagnose: bool = typer.Option(
        False, "--diagnose", help="Add the rank-1 misses and their breakdown to the report."
    ),
    csls_k: int = typer.Option(
        CSLS_K,
        "--csls-k",
        min=0,
        help="K of CSLS, by which rank-1 is ranked as the node's search ranks (hubness-aware: "
        "cosine less half the mean of the record's K nearest-neighbour cosines; the default is "
        "the node's K); 0 ranks by cosine. rank1_cosine is always reported.",
    ),
    csls_pairs: bool = typer.Option(
        False,
        "--csls-pairs",
        help="Score the genuine and impostor pairs by CSLS too (thresholds stay on the cosine).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Enrol every image, compare all pairs, report FTE, EER, TAR at FAR 1%/0.1%, rank-1."""
    from matcher.face.dataset_eval import evaluate_dataset
    from matcher.face.pipeline import ExtractOptions

    if detector not in DETECTORS:
        raise typer.BadParameter(f"must be one of {', '.join(DETECTORS)}", param_hint="--detector")
    if multiple_faces not in MULTIPLE_POLICIES:
        raise typer.BadParameter(
            f"must be one of {', '.join(MULTIPLE_POLICIES)}", param_hint="--multiple-faces"
        )
    options = ExtractOptions(
        detector=detector,
        multiple_faces=multiple_faces,
        whole_image_is_face=whole_image_fallback,
        check_quality=not no_quality_checks,
    )
    report = evaluate_dataset(
        dataset,
        options,
        limit_identities=limit_identities,
        workers=workers,
        progress=progress and not as_json,
        cache=cache,
        refresh=refresh,
        diagnose=diagnose,
        csls_k=csls_k or None,
        csls_pairs=csls_pairs,
    )
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    # Text, not markup: a folder fvc[db1_a] showed as fvc, one holding [/] raised MarkupError
    table = Table(title=Text(f"Face evaluation: {dataset}"), show_header=False)
    for key, value in report.items():
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        table.add_row(key, Text(shown))
    Console().print(table)
