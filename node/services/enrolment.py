"""Enrolment: images in, templates extracted, records written to the database and the gallery.

CPU-bound (extraction takes a fraction of a second per image): the HTTP layer calls it from a
worker thread, the CLI under a progress bar. Images that yield no template are reported with
their typed error and enrol nothing; the others are enrolled in one record transaction (one
gallery append per modality) through :meth:`~node.services.records.RecordService.enrol`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.orm import Session

from matcher.errors import BdxError
from matcher.face.pipeline import extract_face
from matcher.face.template import FaceTemplate
from matcher.fingerprint.extract import extract_file
from matcher.fingerprint.match import SearchTemplate
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import GallerySchema, RecordBatch
from matcher.search.face import face_schema, templates_to_records
from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
from node.db.models import Modality, TemplateRecord
from node.restrictions import SharingRestrictions
from node.service_errors import InvalidRequestError
from node.services.galleries import GallerySet, subject_key
from node.services.records import NewRecord, RecordService

Source = bytes | str | os.PathLike[str]


def restrictions_from_json(text: str) -> SharingRestrictions:
    """Sharing restrictions given as JSON text (the body of ``PUT .../restrictions``), as
    ``POST /gallery/enrol``'s ``restrictions`` and ``bdx gallery load --restrictions`` take
    them; :class:`InvalidRequestError` naming each field refused."""
    try:
        return SharingRestrictions.model_validate_json(text)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            said = err.get("msg", "invalid")
            parts.append(f"{where}: {said}" if where else said)
        raise InvalidRequestError("; ".join(parts), reason="invalid_request") from None


@dataclass(frozen=True)
class Capture:
    """One image of one subject to enrol."""

    subject: str
    modality: Modality
    image: Source
    finger_position: int | None = None
    source: str | None = None
    encounter: str | None = None
    restrictions: SharingRestrictions = field(default_factory=SharingRestrictions)
    label: str = ""


@dataclass(frozen=True)
class Extracted:
    capture: Capture
    template: FingerprintTemplate | SearchTemplate | FaceTemplate  # SearchTemplate: prepared
    quality: int
    notes: tuple[str, ...] = ()  # what the extractor chose (e.g. faces it ignored)


@dataclass
class EnrolmentReport:
    enrolled: list[TemplateRecord] = field(default_factory=list)
    failed: list[tuple[Capture, BdxError]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def extract(capture: Capture) -> Extracted:
    """The template of one capture; raises the extractor's typed error."""
    if capture.modality is Modality.FACE:
        if capture.finger_position is not None:
            raise InvalidRequestError("a face has no finger position", reason="bad_position")
        face = extract_face(capture.image)
        return Extracted(capture, face.template, face.quality.score, face.notes)
    position = capture.finger_position or 0
    finger = extract_file(capture.image, finger_position=position)
    return Extracted(capture, finger, finger.image_quality)


class EnrolmentService:
    def __init__(self, session: Session, galleries: GallerySet) -> None:
        self.records = RecordService(session, galleries)
        self.galleries = galleries

    def enrol(
        self,
        captures: Sequence[Capture],
        *,
        actor: str,
        on_progress: Callable[[Capture], None] | None = None,
    ) -> EnrolmentReport:
        """Extract every capture, then enrol those that gave a template."""
        report = EnrolmentReport()
        extracted: dict[Modality, list[Extracted]] = {Modality.FINGERPRINT: [], Modality.FACE: []}
        for capture in captures:
            try:
                item = extract(capture)
                extracted[capture.modality].append(item)
                report.notes += item.notes
            except BdxError as exc:
                report.failed.append((capture, exc))
            if on_progress is not None:
                on_progress(capture)
        report.enrolled += self.enrol_extracted(
            extracted[Modality.FINGERPRINT] + extracted[Modality.FACE], actor=actor
        )
        return report

    def enrol_extracted(self, items: Sequence[Extracted], *, actor: str) -> list[TemplateRecord]:
        """Enrol templates (extracted here or elsewhere, as by the bulk load) in one record
        transaction: one gallery append per modality, all rows pending until every append is
        done, so a capture set with fingers and a face is enrolled whole or not at all."""
        if not items:
            return []
        by_modality = {
            modality: [i for i, item in enumerate(items) if item.capture.modality is modality]
            for modality in (Modality.FINGERPRINT, Modality.FACE)
        }
        schemas = {
            modality: _schema(modality, items[idx[0]].template)
            for modality, idx in by_modality.items()
            if idx
        }
        new = [
            NewRecord(
                subject_external_id=item.capture.subject,
                modality=item.capture.modality,
                format=schemas[item.capture.modality].format,
                format_version=schemas[item.capture.modality].format_version,
                finger_position=item.capture.finger_position,
                quality=item.quality,
                restrictions=item.capture.restrictions,
                source=item.capture.source,
                encounter_external_id=item.capture.encounter,
            )
            for item in items
        ]

        def write(rows: Sequence[TemplateRecord]) -> None:
            for modality, schema in schemas.items():
                idx = by_modality[modality]
                batch = _batch(schema, [rows[i] for i in idx], [items[i].template for i in idx])
                self.galleries.append(schema, batch)

        return self.records.enrol(new, write, actor=actor)


def _schema(
    modality: Modality, template: FingerprintTemplate | SearchTemplate | FaceTemplate
) -> GallerySchema:
    if modality is Modality.FINGERPRINT or not isinstance(template, FaceTemplate):
        return fingerprint_schema()
    return face_schema(template.format, template.format_version)


def _batch(
    schema: GallerySchema,
    rows: Sequence[TemplateRecord],
    templates: Sequence[FingerprintTemplate | SearchTemplate | FaceTemplate],
) -> RecordBatch:
    refs = [row.reference for row in rows]
    subjects = [subject_key(row.subject_id) for row in rows]
    if schema.modality == "fingerprint":
        fingers = [t for t in templates if isinstance(t, FingerprintTemplate | SearchTemplate)]
        positions = [row.finger_position or 0 for row in rows]
        return fingerprint_records(refs, subjects, fingers, positions)
    faces = [t for t in templates if isinstance(t, FaceTemplate)]
    return templates_to_records(refs, subjects, faces, schema)
