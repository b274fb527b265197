"""``bdx gallery``: bulk-load images and templates, reconcile with the database, statistics,
erase deleted records' templates, upgrade a gallery written by an earlier layout.

These commands open the galleries for writing, so they run while ``bdx serve`` is stopped
(the store has one writer; a running server makes them fail with ``gallery_locked``). A
running node takes images over HTTP instead (``POST /gallery/enrol``). ``stats`` and
``reconcile --list-missing`` only read, and also run beside the node.
"""

from __future__ import annotations

import csv
import json as json_module
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from certs.translog.export import csv_cell
from matcher.errors import GalleryError
from matcher.gallery import Gallery
from matcher.gallery.manifest import MANIFEST_NAME, absent
from matcher.search.upgrade import galleries_in, gallery_dirs, upgrade_fingerprint_gallery
from node.cli._common import (
    ConfigOption,
    JsonOption,
    count_progress,
    print_json,
    printable,
    session_for,
    settings_from,
)
from node.db.models import MAX_FINGER_POSITION, Modality
from node.errors import ConfigError
from node.formats.discover import NESTED_FOLDER, NOT_LOADABLE, discover
from node.restrictions import SharingRestrictions
from node.service_errors import InvalidRequestError
from node.services.enrolment import restrictions_from_json
from node.services.galleries import GallerySet, gallery_root
from node.services.loading import LoadOptions, LoadService, Rejection
from node.services.records import MissingRecord, RecordService, missing_records
from node.services.users import local_actor
from node.settings import Settings

app = typer.Typer(help="Load, reconcile and inspect the gallery.", no_args_is_help=True)


def write_report(path: Path, rejected: list[Rejection]) -> None:
    """The rejected files as CSV, or JSON when ``path`` ends in ``.json``. A name that is not
    UTF-8 (lone surrogates) is written escaped: ``\\udcff`` in the CSV, JSON's own escape in
    the JSON (it was a UnicodeEncodeError after the load had committed)."""
    rows = [vars(r) for r in rejected]
    if path.suffix.lower() == ".json":  # ASCII: json escapes every other character
        path.write_text(json_module.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    # cells that start a formula are quoted (CSV injection)
    with path.open("w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "reason", "detail"])
        writer.writeheader()
        writer.writerows([{k: csv_cell(str(v)) for k, v in row.items()} for row in rows])


def restrictions_option(text: str) -> SharingRestrictions:
    """A ``--restrictions JSON`` option's value; a usage error (exit 2) naming what is wrong."""
    try:
        return restrictions_from_json(text)
    except InvalidRequestError as exc:
        raise typer.BadParameter(exc.message) from None


def _check_writable(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK) or path.is_dir():
        raise ConfigError(
            f"--report {path}: cannot write there (no such folder, or not writable)",
            reason="bad_report_path",
        )


@app.command()
def load(
    path: Annotated[Path, typer.Argument(help="a folder (its layouts: above) or one file")],
    modality: Annotated[
        Modality, typer.Option(help="what the images show (templates are fingerprints)")
    ] = Modality.FINGERPRINT,
    finger_position: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_FINGER_POSITION, help="ISO finger code of every image"),
    ] = None,
    min_quality: Annotated[
        int, typer.Option(min=0, max=100, help="reject templates of lower quality (0-100)")
    ] = 0,
    workers: Annotated[int, typer.Option(min=0, help="extraction processes; 0: every core")] = 0,
    report: Annotated[
        Path | None,
        typer.Option(help="write the rejected files (file, reason, detail) here: .csv or .json"),
    ] = None,
    restrictions: Annotated[
        SharingRestrictions | None,
        typer.Option(
            metavar="JSON",
            parser=restrictions_option,
            help="sharing restrictions of every record this load creates, as PUT "
            '/subjects/{id}/restrictions takes them, e.g. \'{"asylum_nationality": "SY"}\'',
        ),
    ] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Load every image, ISO/IEC 19794-2 record and ANSI/NIST-ITL transaction under PATH.

    Layouts: PATH/<subject>/<file> (a folder per subject); PATH/<finger>_<impression>.<ext>
    (FVC: the finger is the subject); or one file (its stem is the subject). Templates are
    .fmr/.iso/.ist files or any file starting with 'FMR\\0'; transactions are .an2/.eft/.nist
    (Type-4/14 finger images: uncompressed, WSQ, JPEG, JPEG 2000 or PNG; Type-9 minutiae:
    INCITS 378 or legacy NIST blocks, enrolled as they are unless the transaction holds the
    finger's image; Type-10 face images). Files already loaded are skipped, so re-running adds
    nothing and an interrupted load resumes (a file's templates are enrolled all together or
    not at all); an erased subject's files are loaded again if they are still under PATH.
    Exit status 3 when some files were rejected (the others are loaded; see --report), also
    files or subject folders that cannot be read; parts of files passed over are listed as
    notes, and files of no loadable kind (or in folders below a subject's) as passed over.
    --restrictions applies to the records this load creates, from their first moment (files
    already loaded keep theirs; change those with `bdx subjects restrict`).
    """
    settings = settings_from(config)
    if report is not None:
        _check_writable(report)  # before the load, not after it committed
    found = discover(path)
    options = LoadOptions(
        modality,
        finger_position,
        min_quality,
        workers,
        restrictions=restrictions or SharingRestrictions(),
    )
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        service = LoadService(session, galleries)
        with count_progress(json) as progress:
            task = progress.add_task("loading", total=len(found.files))
            result = service.load(
                found,
                options,
                actor=local_actor(),
                on_progress=lambda n: progress.advance(task, n),
            )
    if report is not None:
        try:
            write_report(report, result.rejected)
        except OSError as exc:
            raise ConfigError(
                f"the load is done, but the report could not be written: {exc}",
                reason="bad_report_path",
            ) from None
    failed = [{"file": r.file, "error": r.reason, "detail": r.detail} for r in result.rejected]
    notes = [{"file": n.file, "reason": n.reason, "detail": n.detail} for n in result.notes]
    if json:
        print_json(
            {
                "enrolled": result.enrolled,
                "subjects": len(result.subjects),
                "skipped": result.skipped,
                "failed": failed,
                "notes": notes,
                "passed_over": [{"file": f, "reason": r} for f, r in result.passed_over],
            }
        )
    else:
        _say_passed_over(result.passed_over)
        for n in notes:
            said = f"{printable(n['file'])}: {printable(n['detail'])}"
            typer.echo(f"note {said} [{n['reason']}]", err=True)
        for f in failed:
            said = f"{printable(f['file'])}: {printable(f['detail'])}"
            typer.echo(f"rejected {said} [{f['error']}]", err=True)
        typer.echo(
            f"enrolled {result.enrolled} templates of {len(result.subjects)} subjects; "
            f"{result.skipped} files already loaded; {len(failed)} rejected"
        )
    if failed:
        raise typer.Exit(3)


#: How each reason for passing an entry over reads in the load's summary.
PASSED_OVER = {
    NOT_LOADABLE: "not an image, ISO/IEC 19794-2 record or ANSI/NIST-ITL transaction",
    NESTED_FOLDER: "folders below a subject's folder (only its own files are loaded)",
}
#: Example names shown per reason (all are in --json's passed_over).
PASSED_OVER_EXAMPLES = 3


def _say_passed_over(passed: list[tuple[str, str]]) -> None:
    by_reason: dict[str, list[str]] = {}
    for label, reason in passed:
        by_reason.setdefault(reason, []).append(label)
    for reason, labels in by_reason.items():
        shown = ", ".join(printable(label) for label in labels[:PASSED_OVER_EXAMPLES]) + (
            ", ..." if len(labels) > PASSED_OVER_EXAMPLES else ""
        )
        typer.echo(
            f"passed over {len(labels)}: {PASSED_OVER.get(reason, reason)} ({shown})", err=True
        )


@app.command()
def reconcile(
    remove_orphans: Annotated[
        bool,
        typer.Option(
            "--remove-orphans",
            help="remove the gallery records without a database row however many they are",
        ),
    ] = False,
    list_missing: Annotated[
        bool,
        typer.Option(
            "--list-missing",
            help="change nothing, only list the active records the gallery lacks and whom to "
            "re-enrol (reference, subject, modality, finger); takes no lock, so it also runs "
            "while the node serves",
        ),
    ] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Finish or undo enrolments and deletions a crash interrupted (also run at start-up and
    before a load).

    Gallery records without a database row are removed when they are as few as a crash
    leaves; more mean the wrong or an empty database, and reconcile refuses (exit 7, nothing
    changed) unless --remove-orphans is given. Active records without a template in the
    gallery (a database newer than its gallery) are counted, not changed: --list-missing
    lists them, with the node running or stopped."""
    if list_missing:
        if remove_orphans:
            raise typer.BadParameter(
                "--list-missing changes nothing; run it without --remove-orphans",
                param_hint="--remove-orphans",
            )
        _list_missing(settings_from(config), json)
        return
    settings = settings_from(config)
    with session_for(settings) as session, GallerySet.open(settings.gallery_path) as galleries:
        report = RecordService(session, galleries).reconcile(
            actor=local_actor(), remove_orphans=remove_orphans
        )
    if json:
        print_json(vars(report))
        return
    for name, count in report.summary().items():
        typer.echo(f"{name.replace('_', ' ')}: {count}")


def _list_missing(settings: Settings, json: bool) -> None:
    """``reconcile --list-missing``: the galleries opened read-only, the database only read."""
    with session_for(settings) as session:
        found = missing_records(session, lambda: _gallery_references(settings.gallery_path))
    if json:
        print_json({"missing_from_gallery": [vars(m) for m in found]})
        return
    for m in found:
        typer.echo(f"subject {printable(m.subject)}: {_what(m)} (record {m.reference})")
    if not found:
        typer.echo("every active record is in the gallery")
        return
    subjects = len({m.subject for m in found})
    typer.echo(
        f"{len(found)} active records of {subjects} subjects are not in the gallery and are "
        "never found: delete those subjects (bdx subjects delete) and enrol their images again"
    )


def _what(record: MissingRecord) -> str:
    if record.finger_position is None:
        return record.modality
    return f"{record.modality} finger {record.finger_position}"


def _gallery_references(root: Path) -> set[str]:
    """Every live reference of the galleries under ``root``, each opened read-only (no lock:
    beside a running node, which may merge or erase meanwhile; a reader retries then)."""
    found: set[str] = set()
    for path in gallery_dirs(gallery_root(root)):
        try:
            with Gallery.open(path, verify=False) as gallery:
                found.update(gallery.references())
        except GalleryError as exc:
            if exc.reason != "no_gallery":  # a folder an interrupted create left empty
                raise
    return found


@app.command()
def erase(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Erase deleted records' templates from the gallery files now (a deletion only hides
    them; a running node erases them every gallery_erase_interval_s)."""
    settings = settings_from(config)
    with GallerySet.open(settings.gallery_path, verify=False) as galleries:
        waiting = galleries.awaiting_erasure()
        rewritten = galleries.erase()
    if json:
        print_json({"erased": waiting, "segments_rewritten": rewritten})
        return
    typer.echo(f"erased {waiting} deleted records ({rewritten} segments rewritten)")


#: What ``stats`` and ``upgrade`` say (without --json) where the node has no gallery yet
#: (``upgrade`` said nothing).
NO_GALLERIES = "no galleries yet"


@app.command()
def stats(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Records, deletions, segments and bytes of every gallery (read-only: also while the
    node serves)."""
    settings = settings_from(config)
    found = {}
    for path in gallery_dirs(gallery_root(settings.gallery_path)):
        try:
            with Gallery.open(path, verify=False) as gallery:
                found[path.name] = vars(gallery.stats())
        except GalleryError as exc:
            if exc.reason != "no_gallery":  # a folder an interrupted create left empty
                raise
    if json:
        print_json(found)
        return
    if not found:
        typer.echo(NO_GALLERIES)
    for name, s in found.items():
        typer.echo(
            f"{name}: {s['records']} records, {s['deleted']} deleted (awaiting erasure), "
            f"{s['segments']} segments, {s['bytes']} bytes (generation {s['generation']})"
        )


def _galleries_to_upgrade(root: Path) -> list[Path]:
    """The gallery folders under ``root`` that hold a gallery; refuses, before any is rebuilt,
    a folder of gallery files that lost its ``MANIFEST.json`` (``missing_manifest``, exit 7:
    it was passed over, exit 0). An empty folder (an interrupted create's) is no gallery."""
    held = []
    for path in galleries_in(root):
        if not (path / MANIFEST_NAME).exists():
            error = absent(path)
            if error.reason != "no_gallery":
                raise error
            continue
        held.append(path)
    return held


@app.command()
def upgrade(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Rebuild fingerprint galleries written with an earlier field layout from their stored
    arrays (search refuses them with reason schema_mismatch); current galleries are left alone.

    An upgrade a crash interrupted (X.old, X.upgrade beside X) is finished or undone first, as
    serve and load do it; where that could cost the only whole copy of the gallery nothing
    changes and the command is refused (interrupted_upgrade, exit 7; README, step 4)."""
    settings = settings_from(config)
    found: dict[str, int] = {}
    for path in _galleries_to_upgrade(gallery_root(settings.gallery_path)):
        with count_progress(json) as bar:
            task = bar.add_task(f"upgrade {path.name}", total=None)

            def step(done: int, total: int, t: TaskID = task) -> None:
                bar.update(t, completed=done, total=total)

            found[path.name] = upgrade_fingerprint_gallery(path, step)
    if json:
        print_json(found)
        return
    if not found:
        typer.echo(NO_GALLERIES)
    for name, n in found.items():
        typer.echo(f"{name}: " + (f"rebuilt, {n} records" if n else "current"))
