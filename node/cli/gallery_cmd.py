"""``bdx gallery``: load images into the gallery, reconcile it with the database, statistics.

These commands open the galleries for writing, so they run while ``bdx serve`` is stopped
(the store has one writer; a running server makes them fail with ``gallery_locked``). A
running node takes images over HTTP instead (``POST /gallery/enrol``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from node.cli._common import ConfigOption, JsonOption, print_json, session_for, settings_from
from node.db.models import MAX_FINGER_POSITION, Modality
from node.errors import NotFoundError
from node.services.enrolment import Capture, EnrolmentService
from node.services.galleries import GallerySet
from node.services.records import RecordService
from node.services.users import local_actor

app = typer.Typer(help="Load, reconcile and inspect the gallery.", no_args_is_help=True)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm"})


def captures_in(
    directory: Path, modality: Modality, finger_position: int | None, source: str
) -> list[Capture]:
    """One capture per image file in each sub-directory; the sub-directory names the subject."""
    if not directory.is_dir():
        raise NotFoundError(f"{directory} is not a directory", reason="not_a_directory")
    return [
        Capture(
            subject=sub.name,
            modality=modality,
            image=path,
            finger_position=finger_position,
            source=source,
            label=str(path.relative_to(directory)),
        )
        for sub in sorted(p for p in directory.iterdir() if p.is_dir())
        for path in sorted(sub.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


@app.command()
def load(
    directory: Annotated[Path, typer.Argument(help="one sub-directory of images per subject")],
    modality: Annotated[Modality, typer.Option(help="what the images show")],
    finger_position: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_FINGER_POSITION, help="ISO finger code of every image"),
    ] = None,
    source: Annotated[str | None, typer.Option(help="load batch name (default: DIR)")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Extract and enrol every image under DIR (DIR/<subject>/<image>)."""
    settings = settings_from(config)
    captures = captures_in(directory, modality, finger_position, source or directory.name)
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        service = EnrolmentService(session, galleries)
        with Progress(transient=True, disable=json) as progress:
            task = progress.add_task("extracting", total=len(captures))
            report = service.enrol(
                captures, actor=local_actor(), on_progress=lambda _: progress.advance(task)
            )
        enrolled = len(report.enrolled)
        subjects = len({r.subject_id for r in report.enrolled})
    failed = [{"file": c.label, "error": e.reason, "detail": e.message} for c, e in report.failed]
    if json:
        print_json({"enrolled": enrolled, "subjects": subjects, "failed": failed})
    else:
        for f in failed:
            typer.echo(f"skipped {f['file']}: {f['detail']} [{f['error']}]", err=True)
        typer.echo(f"enrolled {enrolled} templates of {subjects} subjects; {len(failed)} failed")
    if failed:
        raise typer.Exit(3)


@app.command()
def reconcile(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Finish or undo enrolments and deletions a crash interrupted (also run at start-up)."""
    settings = settings_from(config)
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        report = RecordService(session, galleries).reconcile(actor=local_actor())
    if json:
        print_json(vars(report))
        return
    for name, count in report.summary().items():
        typer.echo(f"{name.replace('_', ' ')}: {count}")


@app.command()
def stats(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Records, deletions, segments and bytes of every gallery."""
    settings = settings_from(config)
    with GallerySet.open(settings.gallery_path, verify=False) as galleries:
        found = {name: vars(s) for name, s in galleries.stats().items()}
    if json:
        print_json(found)
        return
    if not found:
        typer.echo("no galleries yet")
    for name, s in found.items():
        typer.echo(
            f"{name}: {s['records']} records, {s['deleted']} deleted, "
            f"{s['segments']} segments, {s['bytes']} bytes (generation {s['generation']})"
        )
