"""1:N search for officers: fingerprint images in, candidate subjects and a hit/no-hit out.

A probe is one or more fingers (image and ISO position). Each is extracted and searched against
the gallery (:func:`fingerprint_candidates`); a subject's score is its best finger's, and its
estimated FMR that score's FMR in the matcher's measured table times the number of fingers.
The search is a hit when the best subject reaches the measured threshold for
``settings.search_fmr / fingers`` (:mod:`node.thresholds`), the same rule peers' queries use.

A face probe (an image or a face template) is searched with :func:`matcher.search.search_face`
against the gallery of its embedding format; the decision is score >= the cosine threshold
measured on LFW for the FMR target (:data:`node.thresholds.FACE_THRESHOLDS`).

Candidates are the node's subjects (external ids) with at least one active record; every
search is written to the audit trail (counts and outcome only, no biometric data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from matcher.face.pipeline import extract_face
from matcher.face.template import FaceTemplate
from matcher.fingerprint.extract import extract_file
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search.face import face_schema, search_face
from matcher.search.fingerprint import fingerprint_schema, search_fingerprint
from matcher.search.fusion import SubjectCandidate
from node.db.models import RecordState, Subject, TemplateRecord
from node.repositories.audit import AuditRepository
from node.service_errors import InvalidRequestError
from node.services.galleries import GallerySet
from node.thresholds import face_fmr, face_threshold, fingerprint_fmr, fingerprint_threshold

#: Most fingers one probe may carry (ten-print).
MAX_FINGERS = 10


def fingerprint_candidates(
    gallery: Gallery, probes: Sequence[FingerprintTemplate], k: int
) -> list[SubjectCandidate]:
    """Subjects best first: each one's best finger score over the probe's fingers and its
    estimated FMR (the score's measured FMR times the number of fingers, at most 1)."""
    best: dict[str, float] = {}
    for probe in probes:
        for c in search_fingerprint(gallery, probe, k=k).candidates:
            best[c.subject] = max(best.get(c.subject, -np.inf), c.score)
    n = len(probes)
    found = [
        SubjectCandidate(subject, score, min(1.0, n * fingerprint_fmr(score)))
        for subject, score in best.items()
    ]
    found.sort(key=lambda c: (-c.score, c.subject))
    return found[:k]


@dataclass(frozen=True)
class FingerProbe:
    image: bytes
    finger_position: int = 0


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float
    fmr: float | None


@dataclass(frozen=True)
class FaceOutcome:
    hit: bool
    target_fmr: float
    threshold: float
    threshold_fmr: float  # the FMR measured at ``threshold``
    candidates: list[Candidate]
    gallery_size: int


@dataclass(frozen=True)
class SearchOutcome:
    hit: bool
    target_fmr: float
    candidates: list[Candidate]
    gallery_size: int


class SearchService:
    def __init__(self, session: Session, galleries: GallerySet, *, target_fmr: float) -> None:
        self.session = session
        self.galleries = galleries
        self.target_fmr = target_fmr
        self.audit = AuditRepository(session)

    def search_fingerprints(
        self, probes: Sequence[FingerProbe], *, k: int, actor: str
    ) -> SearchOutcome:
        """Extract and search; raises the extractor's typed error for an unusable image."""
        if not 1 <= len(probes) <= MAX_FINGERS:
            raise InvalidRequestError(
                f"a probe has 1 to {MAX_FINGERS} fingers, not {len(probes)}", reason="bad_probe"
            )
        positions = [p.finger_position for p in probes]
        known = [p for p in positions if p != 0]
        if len(set(known)) != len(known):
            raise InvalidRequestError("a finger position is repeated", reason="bad_probe")
        templates = [extract_file(p.image, finger_position=p.finger_position) for p in probes]
        with self.galleries.reading(fingerprint_schema()) as gallery:
            found: list[SubjectCandidate] = []
            size = 0
            if gallery is not None and len(gallery) > 0:
                found, size = fingerprint_candidates(gallery, templates, k), len(gallery)
        threshold, _ = fingerprint_threshold(self.target_fmr / len(templates))
        candidates = self._to_subjects(found)
        hit = bool(candidates) and candidates[0].score >= threshold
        self.audit.record(
            actor,
            "search.fingerprint",
            None,
            {"fingers": len(probes), "hit": hit, "candidates": len(candidates)},
        )
        self.session.commit()
        return SearchOutcome(hit, self.target_fmr, candidates, size)

    def search_face(
        self, *, image: bytes | None = None, template: bytes | None = None, k: int, actor: str
    ) -> FaceOutcome:
        """Search one face (exactly one of an image or FaceTemplate bytes) against the gallery."""
        if image is not None and template is None:
            probe = extract_face(image).template
        elif template is not None and image is None:
            probe = FaceTemplate.from_bytes(template)
        else:
            raise InvalidRequestError("give an image or a template, not both", reason="bad_probe")
        threshold, threshold_fmr = face_threshold(self.target_fmr)
        found: list[SubjectCandidate] = []
        size = 0
        with self.galleries.reading(face_schema(probe.format, probe.format_version)) as gallery:
            if gallery is not None and len(gallery) > 0:
                (result,) = search_face(
                    gallery,
                    probe.embedding[None, :],
                    format=probe.format,
                    format_version=probe.format_version,
                    k=k,
                    threshold=threshold,
                )
                best: dict[str, float] = {}
                for c in result.candidates:  # best first: keep each subject's best record
                    best.setdefault(c.subject, c.score)
                found = [
                    SubjectCandidate(subj, score, face_fmr(score)) for subj, score in best.items()
                ]
                size = len(gallery)
        candidates = self._to_subjects(found)
        hit = bool(candidates) and candidates[0].score >= threshold
        self.audit.record(actor, "search.face", None, {"hit": hit, "candidates": len(candidates)})
        self.session.commit()
        return FaceOutcome(hit, self.target_fmr, threshold, threshold_fmr, candidates, size)

    def _to_subjects(self, found: Sequence[SubjectCandidate]) -> list[Candidate]:
        """The node's subjects for gallery subject keys, best first, active ones only."""
        ids = {c.subject: int(c.subject[1:]) for c in found if c.subject[1:].isdigit()}
        if not ids:
            return []
        active = (
            select(Subject.id, Subject.external_id)
            .join(TemplateRecord, TemplateRecord.subject_id == Subject.id)
            .where(Subject.id.in_(ids.values()), TemplateRecord.state == RecordState.ACTIVE)
            .distinct()
        )
        names = {sid: ext for sid, ext in self.session.execute(active)}
        out = []
        for cand in found:
            sid = ids.get(cand.subject)
            if sid is not None and sid in names:
                out.append(Candidate(names[sid], cand.score, cand.fmr))
        return out
