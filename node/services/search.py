"""1:N search for officers: fingerprint and face probes in, candidate subjects and a hit/no-hit
out.

A fingerprint probe is one or more fingers (ISO position and either an image to extract or an
ISO/IEC 19794-2:2005 record). A record with one finger view gives that view; a record with
several gives the view at the finger's position, which must then be given and be held by
exactly one view. A view without a position takes the given one; a view's known position that
differs from a given one is refused. Each finger is searched against the gallery
(:func:`fingerprint_candidates`); a subject's score is its best finger's, and its estimated FMR
that score's FMR in the matcher's measured table times the number of fingers. The search is a
hit when the best subject reaches the threshold for the per-finger target: the stricter of
``settings.search_fmr`` and the FMR that keeps ``settings.search_fpir`` over the gallery's
records, divided over the fingers (:func:`node.thresholds.fingerprint_search_threshold`); the
same rule peers' queries use.

A face probe (an image or a face template) is searched with :func:`matcher.search.search_face`
against the gallery of its embedding format; the decision is score >= the cosine threshold
measured on LFW for the FMR target, made stricter for the gallery's size as for fingers
(:data:`node.thresholds.FACE_THRESHOLDS`). Records are
ranked by CSLS with the offsets the gallery set keeps (those at or above the threshold first),
so the decision is the cosine's and CSLS orders the candidates.

A combined probe (fingers and/or a face, :meth:`SearchService.search`) runs each modality as
above and fuses per subject with the ``"fmr"`` rule of :mod:`matcher.search.fusion`: Fisher's
method on the modalities' ``-log10 FMR`` estimates, over the probe's modalities the subject
is enrolled in (a modality it is enrolled in but that did not return it counts FMR 1 there,
and speaks against it; one it has no record of is left out). The fused decision is a hit when
the best subject's fused FMR is at most the target (the stricter of ``search_fmr`` and the FMR
that keeps ``search_fpir`` over the larger searched gallery's records, so that a fingers-only
probe decides as its fingerprint search), or, for a target stricter than the tables reach, at
most the fused FMR of a subject at the strictest row of each of its fused modalities (the
clamp rule of :mod:`node.thresholds`).

Candidates are the node's subjects (external ids), counted through their *active* records
only (a record mid-enrolment or mid-deletion is never a result), and ``k`` counts subjects: the
gallery is asked for more records until k distinct subjects are found or it has no more. Every
search is written to the audit trail (counts and outcome only, no biometric data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from matcher.errors import TemplateFormatError
from matcher.face.pipeline import extract_face
from matcher.face.template import DEFAULT_FORMAT, FORMAT_VERSION, FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.extract import extract_file
from matcher.fingerprint.match import SearchTemplate
from matcher.fingerprint.template import FingerprintTemplate
from matcher.gallery import Gallery
from matcher.search import params as search_params
from matcher.search.face import face_schema, search_face
from matcher.search.fingerprint import fingerprint_schema, prepare_checked, search_fingerprint
from matcher.search.fusion import SubjectCandidate, fused_fmr
from matcher.search.results import Candidate as SearchCandidate
from node.db.models import RecordState, Subject, TemplateRecord
from node.repositories.audit import AuditRepository
from node.service_errors import InvalidRequestError
from node.services.galleries import GallerySet
from node.thresholds import (
    expected_fpir,
    face_fmr,
    face_search_threshold,
    fingerprint_fmr,
    fingerprint_search_threshold,
    search_fmr,
)

#: Most fingers one probe may carry (ten-print).
MAX_FINGERS = 10


#: Factor by which the records asked of the gallery grow when the first answer held fewer than
#: k distinct subjects (several records of one subject, records between commits).
WIDEN = 4


def inactive_references(session_or_engine: Session | Engine) -> list[str]:
    """References of the records not ``active`` (an enrolment or deletion in progress, or
    one a crash interrupted): their gallery templates are never a result. Few at any time."""
    # IN over the other states (not "!= active"): it walks the state index, not every row.
    others = [s for s in RecordState if s is not RecordState.ACTIVE]
    query = select(TemplateRecord.reference).where(TemplateRecord.state.in_(others))
    if isinstance(session_or_engine, Session):
        return list(session_or_engine.scalars(query))
    with session_or_engine.connect() as conn:
        return list(conn.scalars(query))


def subject_records(
    search: Callable[[int], Sequence[SearchCandidate]],
    k: int,
    exclude: Collection[str],
    gallery: Gallery,
) -> list[SearchCandidate]:
    """The candidate records of ``search(kk)`` (best first) that hold at least ``k`` distinct
    subjects, or all there are: records in ``exclude`` dropped; ``kk`` starts at k times the
    gallery's records per subject (plus the excluded) and grows by ``WIDEN`` until enough
    subjects remain or the gallery is exhausted."""
    size = len(gallery)
    per_subject = size / max(1, len(gallery.subject_codes()[1]))
    kk = math.ceil(k * per_subject) + len(exclude)
    while True:
        got = search(kk)
        kept = [c for c in got if c.reference not in exclude]
        if len({c.subject for c in kept}) >= k or len(got) < kk or kk >= size:
            return kept
        kk *= WIDEN


def fingerprint_candidates(
    gallery: Gallery,
    probes: Sequence[FingerprintTemplate],
    k: int,
    *,
    threads: int = search_params.THREADS,
    exclude: Collection[str] = (),
) -> list[SubjectCandidate]:
    """Subjects best first: each one's best finger score over the probe's fingers and its
    estimated FMR (the score's measured FMR times the number of fingers, at most 1).
    ``threads``: at most this many per finger's search. Records in ``exclude`` (not active)
    are never counted, and each finger's search is widened until it holds ``k`` subjects."""
    best: dict[str, float] = {}
    skip = frozenset(exclude)
    # Every finger is checked before the first search: a probe whose last view is unusable
    # ran the searches of the others first, and its refusal gave the peer's quota back.
    prepared = [(prepare_checked(probe), probe.finger_position) for probe in probes]
    for search_template, position in prepared:

        def one(
            kk: int, probe: SearchTemplate = search_template, position: int = position
        ) -> Sequence[SearchCandidate]:
            return search_fingerprint(
                gallery, probe, k=kk, position=position, threads=threads
            ).candidates

        for c in subject_records(one, k, skip, gallery):
            best[c.subject] = max(best.get(c.subject, -np.inf), c.score)
    n = len(probes)
    top = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]  # FMR look-ups for k
    return [
        SubjectCandidate(subject, score, min(1.0, n * fingerprint_fmr(score)))
        for subject, score in top
    ]


def face_candidates(
    galleries: GallerySet,
    gallery: Gallery,
    probe: FaceTemplate,
    k: int,
    threshold: float,
    exclude: Collection[str] = (),
    *,
    hits_only: bool = False,
) -> list[SubjectCandidate]:
    """Subjects for one face, in CSLS order (records at or above ``threshold`` first), each
    with the best cosine of its records and that cosine's FMR; at most ``k``. Records in
    ``exclude`` (not active) are never counted; ``hits_only``: records below the threshold
    neither."""
    offsets = galleries.face_offsets(gallery)

    def one(kk: int) -> Sequence[SearchCandidate]:
        (result,) = search_face(
            gallery,
            probe.embedding[None, :],
            format=probe.format,
            format_version=probe.format_version,
            k=kk,
            threshold=threshold,
            offsets=offsets,
        )
        return result.hits if hits_only else result.candidates

    # A subject keeps the place of its first record and the best cosine of any of its records.
    best: dict[str, float] = {}
    for c in subject_records(one, k, frozenset(exclude), gallery):
        best[c.subject] = max(best.get(c.subject, -math.inf), c.score)
    return [SubjectCandidate(s, score, face_fmr(score)) for s, score in list(best.items())[:k]]


@dataclass(frozen=True)
class FingerProbe:
    """One finger: an image to extract or an ISO/IEC 19794-2:2005 record (exactly one)."""

    image: bytes | None = None
    template: bytes | None = None
    finger_position: int = 0


@dataclass(frozen=True)
class FaceProbe:
    """One face: an image to extract or FaceTemplate bytes (exactly one)."""

    image: bytes | None = None
    template: bytes | None = None


def _one_of(image: bytes | None, template: bytes | None, what: str) -> None:
    if (image is None) == (template is None):
        raise InvalidRequestError(
            f"give {what} image or its template (exactly one)", reason="bad_probe"
        )


def finger_template(probe: FingerProbe) -> FingerprintTemplate:
    """The probe's minutiae (see the module doc); raises the extractor's or decoder's typed
    error for an unusable image or a malformed record."""
    _one_of(probe.image, probe.template, "a finger's")
    pos = probe.finger_position
    if probe.image is not None:
        return extract_file(probe.image, finger_position=pos)
    assert probe.template is not None
    views = iso19794_2.decode_all(probe.template)
    if len(views) > 1:
        views = [v for v in views if pos != 0 and v.finger_position == pos]
        if len(views) != 1:
            raise InvalidRequestError(
                "the record holds several finger views: give the position of exactly one of them",
                reason="bad_probe",
            )
    view = views[0]
    if view.finger_position == 0:
        return replace(view, finger_position=pos)
    if pos not in (0, view.finger_position):
        raise InvalidRequestError(
            f"the record's finger position {view.finger_position} is not the given {pos}",
            reason="bad_probe",
        )
    return view


def face_template(probe: FaceProbe) -> tuple[FaceTemplate, tuple[str, ...]]:
    """The probe's template, and the extractor's notes when it was an image."""
    _one_of(probe.image, probe.template, "a face's")
    if probe.image is not None:
        face = extract_face(probe.image)
        return face.template, face.notes
    assert probe.template is not None
    return FaceTemplate.from_bytes(probe.template), ()


def _check_positions(positions: Sequence[int]) -> None:
    known = [p for p in positions if p != 0]
    if len(set(known)) != len(known):
        raise InvalidRequestError("a finger position is repeated", reason="bad_probe")


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float
    fmr: float | None


def check_face_format(probe: FaceTemplate, gallery: object | None) -> None:
    """Refuse a face probe this node cannot compare: a format and version for which it holds
    no gallery and does not make (an empty answer would read as "no match")."""
    if gallery is None and (probe.format, probe.format_version) != (
        DEFAULT_FORMAT,
        FORMAT_VERSION,
    ):
        raise TemplateFormatError(
            f"this node holds no face templates of {probe.format} "
            f"v{probe.format_version}: not compared",
            reason="incompatible_format",
        )


@dataclass(frozen=True)
class FaceOutcome:
    hit: bool
    target_fmr: float
    threshold: float
    threshold_fmr: float  # the FMR measured at ``threshold``
    candidates: list[Candidate]
    gallery_size: int
    target_fpir: float
    fpir: float  # estimated at ``threshold_fmr`` over the gallery's records
    notes: tuple[str, ...] = ()  # the extractor's, for an image probe


@dataclass(frozen=True)
class SearchOutcome:
    hit: bool
    target_fmr: float
    threshold: float  # the score a hit's best finger reaches
    threshold_fmr: float  # per finger: the target over the fingers, within the measured table
    candidates: list[Candidate]
    gallery_size: int
    target_fpir: float
    fpir: float  # estimated at ``threshold_fmr`` over fingers x records comparisons


@dataclass(frozen=True)
class FusedCandidate:
    subject: str
    score: float  # Fisher's statistic: the sum of -log10 FMR over the modalities
    fmr: float  # its estimated FMR
    fingerprint_fmr: float | None  # None: not among that modality's candidates
    face_fmr: float | None


@dataclass(frozen=True)
class FusedOutcome:
    hit: bool
    target_fmr: float
    decision_fmr: float  # the target (stricter for the gallery's size), or the strictest fused
    # FMR the measured tables reach
    candidates: list[FusedCandidate]
    target_fpir: float = 1.0
    fpir: float = 1.0  # estimated at ``decision_fmr`` over the subjects compared


@dataclass(frozen=True)
class CombinedOutcome:
    fingerprint: SearchOutcome | None
    face: FaceOutcome | None
    fused: FusedOutcome


#: One modality's subjects and the strictest FMR its measured table reaches for the probe.
ModalityResult = tuple[list[Candidate], float]


def _z(fmr: float | None) -> float:
    return 0.0 if fmr is None else -math.log10(fmr)


def fuse_outcomes(
    fingerprint: ModalityResult | None,
    face: ModalityResult | None,
    target: float,
    enrolled: Mapping[str, Collection[str]] | None = None,
) -> FusedOutcome:
    """Subjects of the modalities fused by Fisher's method, best first (see the module doc).

    ``enrolled`` names each candidate subject's modalities with active records: a subject is
    fused over the probe's modalities it has (a face probe cannot speak against a subject
    enrolled with fingers only), with the decision FMR of those modalities' floors. A subject
    missing from it is fused over all the probe's modalities."""
    by_modality = {
        name: ({c.subject: c.fmr for c in result[0]}, result[1])
        for name, result in (("fingerprint", fingerprint), ("face", face))
        if result is not None
    }
    fused: list[tuple[FusedCandidate, float]] = []
    for subject in {s for fmrs, _ in by_modality.values() for s in fmrs}:
        has = enrolled.get(subject) if enrolled is not None else None
        used = [m for m in by_modality if has is None or m in has] or list(by_modality)
        z = sum(_z(by_modality[m][0].get(subject)) for m in used)
        fmr = float(fused_fmr(z, len(used)))
        floor = float(fused_fmr(sum(_z(by_modality[m][1]) for m in used), len(used)))
        fp = by_modality.get("fingerprint", ({}, 0.0))[0].get(subject)
        fc = by_modality.get("face", ({}, 0.0))[0].get(subject)
        fused.append((FusedCandidate(subject, z, fmr, fp, fc), max(target, floor)))
    fused.sort(key=lambda cd: (cd[0].fmr, -cd[0].score, cd[0].subject))
    if fused:
        decision = fused[0][1]
    else:
        floors = [floor for _, floor in by_modality.values()]
        decision = max(target, float(fused_fmr(sum(_z(f) for f in floors), len(floors))))
    hit = bool(fused) and fused[0][0].fmr <= decision
    return FusedOutcome(hit, target, decision, [c for c, _ in fused])


class SearchService:
    def __init__(
        self, session: Session, galleries: GallerySet, *, target_fmr: float, target_fpir: float
    ) -> None:
        self.session = session
        self.galleries = galleries
        self.target_fmr = target_fmr  # per comparison
        self.target_fpir = target_fpir  # per search of a stranger, whatever the gallery's size
        self.audit = AuditRepository(session)

    def search_fingerprints(
        self, probes: Sequence[FingerProbe], *, k: int, actor: str
    ) -> SearchOutcome:
        """Extract or decode each finger and search; raises the extractor's or the record
        decoder's typed error for an unusable image or record."""
        outcome = self._fingerprints(probes, k)
        details = {
            "fingers": len(probes),
            "hit": outcome.hit,
            "candidates": len(outcome.candidates),
        }
        self.audit.record(actor, "search.fingerprint", None, details)
        self.session.commit()
        return outcome

    def search_face(
        self, *, image: bytes | None = None, template: bytes | None = None, k: int, actor: str
    ) -> FaceOutcome:
        """Search one face (exactly one of an image or FaceTemplate bytes) against the gallery."""
        outcome = self._face(FaceProbe(image, template), k)
        details = {"hit": outcome.hit, "candidates": len(outcome.candidates)}
        self.audit.record(actor, "search.face", None, details)
        self.session.commit()
        return outcome

    def search(
        self, fingers: Sequence[FingerProbe], face: FaceProbe | None, *, k: int, actor: str
    ) -> CombinedOutcome:
        """Search every modality of the probe and fuse per subject (see the module doc)."""
        if not fingers and face is None:
            raise InvalidRequestError("give fingers, a face or both", reason="bad_probe")
        fingerprint = self._fingerprints(fingers, k) if fingers else None
        face_outcome = self._face(face, k) if face is not None else None
        fp_floor = min(1.0, len(fingers) * fingerprint_fmr(math.inf))
        named = {c.subject for o in (fingerprint, face_outcome) if o for c in o.candidates}
        # Fused scores are per subject; a gallery holds at most as many subjects as records.
        compared = max(o.gallery_size for o in (fingerprint, face_outcome) if o is not None)
        fused = fuse_outcomes(
            None if fingerprint is None else (fingerprint.candidates, fp_floor),
            None if face_outcome is None else (face_outcome.candidates, face_fmr(math.inf)),
            search_fmr(self.target_fmr, self.target_fpir, compared),
            self._enrolled_modalities(named),
        )
        fused = replace(
            fused,
            target_fmr=self.target_fmr,
            candidates=fused.candidates[:k],
            target_fpir=self.target_fpir,
            fpir=expected_fpir(fused.decision_fmr, compared),
        )
        details = {
            "fingers": len(fingers),
            "face": face is not None,
            "hit": fused.hit,
            "candidates": len(fused.candidates),
        }
        self.audit.record(actor, "search.combined", None, details)
        self.session.commit()
        return CombinedOutcome(fingerprint, face_outcome, fused)

    def _fingerprints(self, probes: Sequence[FingerProbe], k: int) -> SearchOutcome:
        if not 1 <= len(probes) <= MAX_FINGERS:
            raise InvalidRequestError(
                f"a probe has 1 to {MAX_FINGERS} fingers, not {len(probes)}", reason="bad_probe"
            )
        _check_positions([p.finger_position for p in probes])
        templates = [finger_template(p) for p in probes]
        _check_positions([t.finger_position for t in templates])
        inactive = inactive_references(self.session)
        with self.galleries.reading(fingerprint_schema()) as gallery:
            found: list[SubjectCandidate] = []
            size = 0
            if gallery is not None and len(gallery) > 0:
                found = fingerprint_candidates(gallery, templates, k, exclude=inactive)
                size = len(gallery)
        threshold, threshold_fmr, fpir = fingerprint_search_threshold(
            self.target_fmr, self.target_fpir, len(templates), size
        )
        candidates = self._to_subjects(found)
        hit = bool(candidates) and candidates[0].score >= threshold
        return SearchOutcome(
            hit,
            self.target_fmr,
            threshold,
            threshold_fmr,
            candidates,
            size,
            self.target_fpir,
            fpir,
        )

    def _face(self, face: FaceProbe, k: int) -> FaceOutcome:
        probe, notes = face_template(face)
        found: list[SubjectCandidate] = []
        inactive = frozenset(inactive_references(self.session))
        with self.galleries.reading(face_schema(probe.format, probe.format_version)) as gallery:
            check_face_format(probe, gallery)
            size = 0 if gallery is None else len(gallery)
            threshold, threshold_fmr, fpir = face_search_threshold(
                self.target_fmr, self.target_fpir, size
            )
            if gallery is not None and size > 0:
                found = face_candidates(self.galleries, gallery, probe, k, threshold, inactive)
        candidates = self._to_subjects(found)
        hit = bool(candidates) and candidates[0].score >= threshold
        return FaceOutcome(
            hit,
            self.target_fmr,
            threshold,
            threshold_fmr,
            candidates,
            size,
            self.target_fpir,
            fpir,
            notes,
        )

    def _enrolled_modalities(self, subjects: Collection[str]) -> dict[str, set[str]]:
        """The modalities each of these subjects (external ids) has active records of."""
        if not subjects:
            return {}
        query = (
            select(Subject.external_id, TemplateRecord.modality)
            .join(TemplateRecord, TemplateRecord.subject_id == Subject.id)
            .where(
                Subject.external_id.in_(list(subjects)),
                TemplateRecord.state == RecordState.ACTIVE,
            )
            .distinct()
        )
        out: dict[str, set[str]] = {}
        for subject, modality in self.session.execute(query):
            out.setdefault(subject, set()).add(modality.value)
        return out

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
