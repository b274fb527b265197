"""Operators' bulk load: files in, records enrolled, idempotent and resumable.

Every file gets an external id, ``file:`` + a digest of (subject, relative path, content
digest), stored as the records' ``source``; a file whose id the database already holds is
skipped, so re-running a load adds nothing and a load that was interrupted resumes where it
stopped. Every record a load creates carries the load's sharing restrictions from its first
moment (:attr:`LoadOptions.restrictions`); a file skipped keeps its records' own. Records are
enrolled in batches through :meth:`~node.services.records.RecordService.enrol` (pending,
gallery append, active), and
:meth:`~node.services.records.RecordService.reconcile` runs first, so a load killed at any
instant leaves no half-records: a batch is in both stores or in neither.

Files are processed on every core (a process pool): images extracted, ISO/IEC 19794-2
records decoded, ANSI/NIST-ITL transactions' images (Type-4/14 fingers, Type-10 faces)
extracted and their Type-9 minutiae taken as they are, and fingerprints prepared for search
(milliseconds each, the bulk of a template load). A file is rejected, with a reason in the
report, when its subject id (folder or file name) is one the database would not take
(``bad_subject``, also a folder name that is not UTF-8), its own name is not UTF-8
(``bad_file_name``), it is larger than ``MAX_FILE_BYTES`` (``too_large``, before it is read), it
cannot be read (``unreadable_file``) or decoded, yields no template or falls under the
quality gate. A reader that fails on a file in a way it does not report (a defect, found on
hostile input) rejects that file alone (``unreadable_file``, naming and logging the error's
type only: its message may quote the file); the node's storage failing still stops the load.
Entries of no loadable kind are listed as passed over.

What is skipped is what the database holds: a subject erased (``DELETE /subjects/{id}``) is
enrolled again if its files are loaded again; the erasure keeps no trace of the files, so
remove them from the source as well.

A transaction's Type-9 minutiae and its image of the same IDC describe one impression, so one
template is enrolled for it, not two (two records of one impression would count twice in a
search): the one extracted here from the image, which is made by the same extractor as every
probe's; the transaction's minutiae are enrolled instead when the image yields no template
(say it is too poor), with a note. Minutiae without an image are enrolled as they are. What a
transaction passes over (vendor-only Type-9 records, duplicate encodings) is reported as notes.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.errors import BdxError
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fingerprint import prepare_checked
from matcher.workers import exit_with_parent, spawning_uninterrupted, usable_cpus
from node.db.models import EXTERNAL_ID_CHARS, Modality, TemplateRecord, is_external_id
from node.errors import NodeError
from node.formats.ansi_nist import NistImage, NistMinutiae, read_transaction
from node.formats.discover import Discovery, FileKind, SourceFile
from node.formats.iso import read_templates
from node.restrictions import SharingRestrictions
from node.services.enrolment import Capture, EnrolmentService, Extracted, extract
from node.services.galleries import GallerySet, require_galleries
from node.services.records import RecordService

#: Records per enrol transaction: large enough that the per-commit cost is amortised, small
#: enough that a killed load loses (rolls back) at most a few seconds of work.
BATCH_RECORDS = 500
#: Pieces per worker a batch is cut into: small pieces balance uneven files (an image takes
#: 100x a template) while keeping the per-piece pickling overhead negligible.
POOL_CHUNKS = 4
#: Largest file loaded (bytes). Images are capped at 64 MiB by the decoder; an ANSI/NIST-ITL
#: transaction of a ten-print card at 1000 ppi, uncompressed, is tens of MB: 256 MiB leaves room
#: and keeps a mislabelled disk image or archive from being read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Seconds the load waits, when its workers stopped, for a Ctrl-C that stopped them to reach
#: this process as KeyboardInterrupt (a sleep runs pending signal handlers at once).
SIGNAL_CHECK_S = 0.05
#: Prefix of the external ids this service writes into ``TemplateRecord.source``.
KEY_PREFIX = "file:"
#: Hex digits of the external id digest (160 bits: collisions are not a concern).
KEY_HEX = 40
#: Reasons of the notes a load reports about parts of a file it passed over or substituted.
NOTE_NOT_READ = "not_read"
NOTE_MINUTIAE_USED = "minutiae_used"
#: What an extractor chose and said so (e.g. a smaller face ignored as a bystander).
NOTE_EXTRACTOR = "extractor"
#: Reason of a file (or subject folder) that could not be read.
UNREADABLE = "unreadable_file"
#: Reason of a file whose name (under its subject's folder) is not UTF-8 text.
BAD_FILE_NAME = "bad_file_name"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    modality: Modality = Modality.FINGERPRINT
    finger_position: int | None = None
    min_quality: int = 0
    workers: int = 0  # 0: every core
    batch_records: int = BATCH_RECORDS
    #: Sharing restrictions of every record the load creates (set as each is enrolled; a
    #: file already loaded is skipped, its records unchanged).
    restrictions: SharingRestrictions = field(default_factory=SharingRestrictions)


@dataclass(frozen=True)
class Rejection:
    file: str
    reason: str
    detail: str


#: A part of a file passed over, or replaced, while the rest of the file was loaded.
Note = Rejection


@dataclass
class LoadReport:
    enrolled: int = 0
    subjects: set[str] = field(default_factory=set)
    skipped: int = 0  # already loaded (an earlier or interrupted run)
    rejected: list[Rejection] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    passed_over: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)


@dataclass(frozen=True)
class _Processed:
    items: list[Extracted]
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    file: SourceFile
    key: str
    modality: Modality
    finger_position: int | None
    restrictions: SharingRestrictions


def file_key(file: SourceFile) -> str:
    """The external id of a file's records (no personal data: a digest). The file is hashed
    in chunks: its size was checked (:func:`_refusal`), but memory is not spent on it here."""
    with file.path.open("rb") as fh:
        content = hashlib.file_digest(fh, "sha256").hexdigest()
    digest = hashlib.sha256(f"{file.subject}\0{file.label}\0{content}".encode()).hexdigest()
    return KEY_PREFIX + digest[:KEY_HEX]


def _capture(job: _Job, finger_position: int | None) -> Capture:
    return Capture(
        subject=job.file.subject,
        modality=job.modality if job.file.kind is FileKind.IMAGE else Modality.FINGERPRINT,
        image=job.file.path,
        finger_position=finger_position,
        source=job.key,
        restrictions=job.restrictions,
        label=job.file.label,
    )


def _nist_capture(job: _Job, image: NistImage) -> Capture:
    face = image.finger_position is None
    return replace(
        _capture(job, image.finger_position),
        modality=Modality.FACE if face else Modality.FINGERPRINT,
        image=image.data,
    )


def _prepared(item: Extracted) -> Extracted:
    """Fingerprints prepared for search here, so that the work runs in the pool too."""
    if isinstance(item.template, FingerprintTemplate):
        return replace(item, template=prepare_checked(item.template))
    return item


def _minutiae_item(job: _Job, minutiae: NistMinutiae) -> Extracted:
    template = minutiae.template
    capture = _capture(job, template.finger_position)
    return Extracted(capture, template, template.image_quality)


def _transaction(job: _Job) -> _Processed:
    """A transaction's templates: its images extracted, its unpaired minutiae as they are."""
    found = read_transaction(job.file.path.read_bytes())
    label = job.file.label
    notes = [Note(label, NOTE_NOT_READ, note) for note in found.notes]
    twins = {m.idc: m for m in found.minutiae}
    items: list[Extracted] = []
    for image in found.images:
        twin = twins.pop(image.idc, None) if image.finger_position is not None else None
        try:
            items.append(extract(_nist_capture(job, image)))
        except BdxError as exc:
            if twin is None:
                raise
            items.append(_minutiae_item(job, twin))
            detail = f"IDC {image.idc}: {exc.message}; its type-9 minutiae were enrolled instead"
            notes.append(Note(label, NOTE_MINUTIAE_USED, detail))
    items += [_minutiae_item(job, m) for m in twins.values()]
    return _Processed(items, notes)


def process(job: _Job) -> _Processed | Rejection:
    """One file's templates, prepared (runs in a worker process), or why it has none."""
    try:
        if job.file.kind is FileKind.IMAGE:
            done = _Processed([extract(_capture(job, job.finger_position))])
        elif job.file.kind is FileKind.ANSI_NIST:
            done = _transaction(job)
        else:
            views = read_templates(job.file.path.read_bytes())
            done = _Processed(
                [
                    Extracted(_capture(job, view.finger_position), view, view.image_quality)
                    for view in views
                ]
            )
        said = [Note(job.file.label, NOTE_EXTRACTOR, n) for item in done.items for n in item.notes]
        return replace(
            done, items=[_prepared(item) for item in done.items], notes=done.notes + said
        )
    except BdxError as exc:
        return Rejection(job.file.label, exc.reason, exc.message)
    except OSError as exc:  # removed or made unreadable since it was listed
        return _unreadable(job.file.label, exc)
    except Exception as exc:  # a reader's defect: this file only (no storage is written here)
        return _undecodable(job.file.label, exc)


def process_many(jobs: Sequence[_Job]) -> list[_Processed | Rejection]:
    """:func:`process` for each of ``jobs`` (one piece of a batch, in one worker)."""
    return [process(job) for job in jobs]


class LoadStoppedError(NodeError):
    """The worker processes of a load ended before its batch was done (exit code 1)."""

    default_reason = "load_stopped"


def _unreadable(label: str, exc: OSError) -> Rejection:
    return Rejection(label, UNREADABLE, f"cannot read ({exc.strerror})")


def _undecodable(label: str, exc: Exception) -> Rejection:
    """A file on which a reader failed unexpectedly: the error's type and where it was raised
    are logged and reported, never its message (it may quote the file's contents)."""
    last = list(traceback.walk_tb(exc.__traceback__))[-1:]
    where = "".join(f" at {Path(f.f_code.co_filename).name}:{line}" for f, line in last)
    logger.error("gallery load: %r: reader failed (%s%s)", label, type(exc).__name__, where)
    return Rejection(label, UNREADABLE, f"cannot decode ({type(exc).__name__}{where})")


def _refusal(file: SourceFile) -> Rejection | None:
    """Why a file is refused before it is read: a subject id the database would not take
    (the API's rules: 1–128 characters, no slash, control characters or outer spaces; and
    text: a folder name that is not UTF-8 is none), a file name that is not UTF-8 (its key,
    :func:`file_key`, is a digest of the text), or a size no biometric file has
    (``MAX_FILE_BYTES``)."""
    if not is_external_id(file.subject):
        return Rejection(
            file.label,
            "bad_subject",
            f"the subject id (from the folder or file name) is not 1–{EXTERNAL_ID_CHARS} "
            "characters of UTF-8 text without slashes, control characters or outer spaces",
        )
    if not _is_text(file.label):
        return Rejection(
            file.label, BAD_FILE_NAME, "the file name is not UTF-8 text; rename the file"
        )
    try:
        size = file.path.stat().st_size
    except OSError as exc:
        return _unreadable(file.label, exc)
    if size > MAX_FILE_BYTES:
        return Rejection(
            file.label, "too_large", f"file of {size} bytes exceeds the limit of {MAX_FILE_BYTES}"
        )
    return None


def _is_text(name: str) -> bool:
    """Whether ``name`` is text: a name whose bytes are not UTF-8 holds lone surrogates."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def _pool(workers: int) -> Iterator[Executor | None]:
    count = workers or usable_cpus()
    if count == 1:
        yield None
        return
    # spawn: forking a process that holds database connections and threads is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=count, mp_context=context, initializer=exit_with_parent
    ) as pool:
        yield pool


class LoadService:
    def __init__(self, session: Session, galleries: GallerySet) -> None:
        self.session = session
        self.galleries = galleries
        self.records = RecordService(session, galleries)
        self.enrolment = EnrolmentService(session, galleries)

    def loaded_keys(self) -> set[str]:
        query = select(TemplateRecord.source).where(TemplateRecord.source.like(KEY_PREFIX + "%"))
        return {key for key in self.session.scalars(query).all() if key is not None}

    def load(
        self,
        found: Discovery,
        options: LoadOptions,
        *,
        actor: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Load the files ``found``; see the module docstring. ``on_progress(n)`` after n more
        files. What discovery could not read is rejected (``unreadable_file``) and what it
        passed over is reported (``passed_over``). Refuses a gallery set that lacks a gallery
        of the database's active records (:func:`require_galleries`)."""
        require_galleries(self.session, self.galleries)
        self.records.reconcile(actor=actor)
        report = LoadReport(passed_over=list(found.passed_over))
        report.rejected += [Rejection(label, UNREADABLE, why) for label, why in found.unreadable]
        files = found.files
        done = self.loaded_keys()
        jobs: list[_Job] = []
        for file in files:
            refused = _refusal(file)
            if refused is not None:
                report.rejected.append(refused)
                continue
            try:
                key = file_key(file)
            except OSError as exc:
                report.rejected.append(_unreadable(file.label, exc))
                continue
            if key in done:
                report.skipped += 1
                continue
            done.add(key)
            jobs.append(
                _Job(file, key, options.modality, options.finger_position, options.restrictions)
            )
        if on_progress is not None and report.skipped:
            on_progress(report.skipped)
        with _pool(options.workers if len(jobs) > 1 else 1) as pool:
            for start in range(0, len(jobs), options.batch_records):
                chunk = jobs[start : start + options.batch_records]
                self._load_chunk(chunk, options, pool, actor, report)
                if on_progress is not None:
                    on_progress(len(chunk))
        return report

    def _load_chunk(
        self,
        chunk: Sequence[_Job],
        options: LoadOptions,
        pool: Executor | None,
        actor: str,
        report: LoadReport,
    ) -> None:
        if pool is None:
            results = process_many(chunk)
        else:
            # Futures of our own, not Executor.map's: at Ctrl-C the workers end (see
            # matcher.workers) and the pool marks their futures failed, which it cannot do to
            # futures map's iterator cancelled on the way out (a traceback per future on 3.11).
            size = max(1, len(chunk) // (POOL_CHUNKS * usable_cpus()))
            with spawning_uninterrupted():
                futures = [
                    pool.submit(process_many, chunk[i : i + size])
                    for i in range(0, len(chunk), size)
                ]
            try:
                results = [result for future in futures for result in future.result()]
            except BrokenProcessPool:
                # Workers end at Ctrl-C (matcher.workers); the parent got the same signal, but
                # its KeyboardInterrupt waits for the main thread's next check, which the pool's
                # failure can beat: give it that check before calling the stop unexplained.
                time.sleep(SIGNAL_CHECK_S)
                raise LoadStoppedError(
                    "the extraction processes stopped (interrupted or killed); run the load "
                    "again: it resumes where it stopped"
                ) from None
        accepted: list[Extracted] = []
        for job, result in zip(chunk, results, strict=True):
            if isinstance(result, Rejection):
                report.rejected.append(result)
            elif min(item.quality for item in result.items) < options.min_quality:
                worst = min(item.quality for item in result.items)
                report.rejected.append(
                    Rejection(
                        job.file.label,
                        "low_quality",
                        f"quality {worst} is below the minimum {options.min_quality}",
                    )
                )
            else:
                accepted += result.items
                report.notes += result.notes
        if accepted:
            rows = self.enrolment.enrol_extracted(accepted, actor=actor)
            report.enrolled += len(rows)
            report.subjects |= {item.capture.subject for item in accepted}
