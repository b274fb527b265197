"""``bdx eval fingerprint``: FVC-protocol accuracy (EER, FNMR at FMR, rank-1) and speed."""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from matcher.fingerprint.extract.params import MAX_PPI, MIN_PPI
from matcher.fingerprint.template import FingerprintTemplate
from node.errors import NotFoundError

_SYNTHETIC = re.compile(r"^(\d+):(\d+)$")
Update = Callable[[str, int, int], None]


@contextmanager
def _progress(enabled: bool) -> Iterator[Update | None]:
    """Yield a progress(stage, done, total) callback drawing rich bars on stderr."""
    if not enabled:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done)

    with bars:
        yield update


def _report_table(title: str, report: dict[str, object]) -> Table:
    # Text, not markup: a folder fvc[db1_a] showed as fvc, one holding [/] raised MarkupError
    table = Table(title=Text(title), show_header=False)
    pct = {
        "eer",
        "eer_45",
        "fnmr_at_fmr_1pct",
        "fnmr_at_fmr_01pct",
        "rank1",
        "rank1_first_impression",
    }
    for key, value in report.items():
        if key == "failures" and isinstance(value, list):
            shown = f"{len(value)}" + "".join(f"\n  {f['file']}: {f['reason']}" for f in value)
        elif key in pct and isinstance(value, float):
            shown = f"{100 * value:.2f}%"
        elif key == "rank1_by_gallery_impression" and isinstance(value, list):
            shown = " ".join(f"{100 * v:.2f}%" for v in value)
        elif isinstance(value, float):
            shown = f"{value:.1f}"
        else:
            shown = json.dumps(value) if isinstance(value, dict) else str(value)
        table.add_row(key, Text(shown))
    return table


def _resolution(value: float | None) -> float | None:
    """The extractor's own range: beyond it every image failed to extract, and the run still
    printed an EER and a comparison rate measured on empty templates, exit 0."""
    if value is not None and not (math.isfinite(value) and MIN_PPI <= value <= MAX_PPI):
        raise typer.BadParameter(
            f"{value:g} is not a resolution from {MIN_PPI:g} to {MAX_PPI:g} ppi"
        )
    return value


def fingerprint(
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Folder in FVC layout: <finger>_<impression>.<tif|png|bmp|jpg|pgm>."
    ),
    synthetic: str | None = typer.Option(
        None,
        "--synthetic",
        metavar="FINGERS:IMPRESSIONS",
        help="Generate a synthetic FVC-layout set (matcher.synthetic) and evaluate it instead.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic set."),
    ppi: float | None = typer.Option(
        None,
        "--ppi",
        callback=_resolution,
        help=f"Scan resolution, {MIN_PPI:g}-{MAX_PPI:g} (default: file metadata, else 500).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Extract every image, score all pairs with the batch kernel, print FVC-protocol figures."""
    from matcher.fingerprint.extract import extract_file
    from matcher.fingerprint.fvc import evaluate

    if (dataset is None) == (synthetic is None):
        raise typer.BadParameter("give exactly one of --dataset DIR or --synthetic F:I")

    def extractor(path: Path) -> FingerprintTemplate:
        return extract_file(path, ppi=ppi)

    m = _SYNTHETIC.match(synthetic) if synthetic is not None else None
    if synthetic is not None and (m is None or int(m[1]) < 2 or int(m[2]) < 2):
        # checked before the progress display starts: it leaves a line on stderr
        raise typer.BadParameter(
            "expected FINGERS:IMPRESSIONS, both at least 2", param_hint="--synthetic"
        )
    if dataset is not None and not dataset.is_dir():
        raise NotFoundError(f"no dataset folder at {dataset}", reason="dataset_not_found")
    with _progress(progress and not as_json) as update, tempfile.TemporaryDirectory() as tmp:
        if m is not None:
            from matcher.synthetic import write_dataset

            def generated(done: int, total: int) -> None:
                if update is not None:
                    update("generate", done, total)

            write_dataset(tmp, int(m[1]), int(m[2]), seed, progress=generated)
            folder = Path(tmp)
            title = f"Fingerprint evaluation: synthetic {synthetic} (seed {seed})"
        else:
            assert dataset is not None
            folder = dataset
            title = f"Fingerprint evaluation: {dataset}"
        report = evaluate(folder, extractor, update).to_dict()
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    Console().print(_report_table(title, report))
