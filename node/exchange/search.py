"""The node's :class:`~node.exchange.responder.ProbeSearch` and restriction lookup.

Fingerprint probes are ISO/IEC 19794-2 records (one per finger, or one multi-view record):
every view is searched against the node's fingerprint gallery
(:func:`matcher.search.fingerprint.search_fingerprint`) at the matcher's *measured* threshold
for the policy's FMR divided by the number of fingers; a subject is a candidate when one of its
fingers reaches it. (The gallery-rank FMR of :mod:`matcher.search.fusion` is not used: in a
large gallery its best-ranked subject always reaches a small FMR, hit or not.) Face probes are
:class:`~matcher.face.template.FaceTemplate` bytes searched with
:func:`matcher.search.face.search_face` at the cosine threshold for the policy's FMR
(:data:`FACE_THRESHOLDS`).

A candidate's ``record_ref`` is the gallery's subject key (``s<id>``, the node's subjects
table); it never leaves the node (peers get an opaque hit reference). Restrictions are those
of every *active* record of the subject, combined so that each one applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from sqlalchemy import Engine, select

from matcher.errors import TemplateFormatError
from matcher.face.template import FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.match.thresholds import TABLE, threshold_for_fmr
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.face import face_schema, search_face
from matcher.search.fingerprint import fingerprint_schema, search_fingerprint
from node.db.models import RecordState, TemplateRecord
from node.exchange.messages import TemplateItem
from node.exchange.responder import Candidate
from node.restrictions import SharingRestrictions
from node.services.galleries import GallerySet
from policy.restrictions import Restrictions, parse_restrictions

#: Template format names this node compares (ISO/IEC 19794-2:2005 records).
FINGERPRINT_FORMATS = frozenset({"iso19794-2:2005", "iso19794-2"})

#: Face cosine threshold for a target FMR, from the face matcher's LFW evaluation (6,000
#: pairs, dlib ResNet embeddings): cosine 0.907 at FAR 1 % and 0.926 at FAR 0.1 %. Below
#: 0.1 % LFW has too few impostor pairs to measure, so stricter targets use the 0.1 % value
#: plus a margin (0.94) that the impostor tail's slope suggests is conservative.
FACE_THRESHOLDS: tuple[tuple[float, float], ...] = ((1e-2, 0.907), (1e-3, 0.926), (0.0, 0.94))


def face_threshold(fmr: float) -> float:
    """The cosine threshold of the first table row whose FMR is at most ``fmr``."""
    for row_fmr, threshold in FACE_THRESHOLDS:
        if fmr >= row_fmr:
            return threshold
    return FACE_THRESHOLDS[-1][1]


def _face_fmr(score: float) -> float:
    """Estimated FMR of a face score: the loosest table row whose threshold it reaches."""
    for row_fmr, threshold in reversed(FACE_THRESHOLDS):
        if score >= threshold:
            return max(row_fmr, 1e-4)
    return 1.0


def fingerprint_threshold(fmr: float) -> float:
    """The matcher's score threshold for ``fmr``, clamped to its measured table: a stricter
    target gets the strictest measured threshold, a looser one the loosest."""
    fmrs = [f for f, _ in TABLE]
    return threshold_for_fmr(float(min(max(fmr, fmrs[-1]), fmrs[0])))


def fingerprint_fmr(score: float) -> float:
    """Estimated FMR of one finger score, interpolated in log(FMR) in the measured table;
    above its strictest threshold the table's smallest FMR (no extrapolation)."""
    thresholds = np.array([t for _, t in TABLE])
    log_fmrs = np.log([f for f, _ in TABLE])
    if score < thresholds[0]:
        return 1.0
    return float(np.exp(np.interp(score, thresholds, log_fmrs)))


def decode_fingerprints(templates: Sequence[TemplateItem]) -> list[FingerprintTemplate]:
    """Every finger view of the probe; positions from the item when the record has none."""
    out: list[FingerprintTemplate] = []
    for item in templates:
        if item.format not in FINGERPRINT_FORMATS:
            raise TemplateFormatError(
                f"unsupported fingerprint format {item.format!r}", reason="unsupported_format"
            )
        for view in iso19794_2.decode_all(item.raw()):
            if item.finger_position is not None and view.finger_position == 0:
                view = replace(view, finger_position=item.finger_position)
            out.append(view)
    positions = [v.finger_position for v in out if v.finger_position != 0]
    if len(set(positions)) != len(positions):
        raise TemplateFormatError("a finger position is repeated", reason="repeated_finger")
    return out


class GallerySearch:
    """Matches peer probes against the node's galleries, in memory (nothing stored)."""

    def __init__(self, galleries: GallerySet) -> None:
        self.galleries = galleries

    def __call__(
        self, modality: str, templates: Sequence[TemplateItem], max_candidates: int, fmr: float
    ) -> list[Candidate]:
        if not templates:
            raise TemplateFormatError("the query carries no template", reason="no_template")
        if modality == "face":
            return self._face(templates, max_candidates, fmr)
        if modality == "fingerprint":
            return self._fingerprint(templates, max_candidates, fmr)
        raise TemplateFormatError(f"unsupported modality {modality!r}", reason="bad_modality")

    def _fingerprint(
        self, templates: Sequence[TemplateItem], k: int, fmr: float
    ) -> list[Candidate]:
        probes = decode_fingerprints(templates)
        # Union of per-finger hits: each finger is held to fmr / fingers (Bonferroni), at the
        # matcher's measured threshold (the strictest measured one below the table's range).
        threshold = fingerprint_threshold(fmr / len(probes))
        best: dict[str, float] = {}
        with self.galleries.reading(fingerprint_schema()) as gallery:
            if gallery is None or len(gallery) == 0:
                return []
            for probe in probes:
                result = search_fingerprint(gallery, probe, k=k, threshold=threshold)
                for c in result.hits:
                    best[c.subject] = max(best.get(c.subject, -np.inf), c.score)
        found = [
            Candidate(subject, score, min(1.0, len(probes) * fingerprint_fmr(score)))
            for subject, score in best.items()
        ]
        found.sort(key=lambda c: (c.fmr, -c.score))
        return found[:k]

    def _face(self, templates: Sequence[TemplateItem], k: int, fmr: float) -> list[Candidate]:
        if len(templates) != 1:
            raise TemplateFormatError("a face query carries one template", reason="bad_probe")
        probe = FaceTemplate.from_bytes(templates[0].raw())
        threshold = face_threshold(fmr)
        schema = face_schema(probe.format, probe.format_version)
        with self.galleries.reading(schema) as gallery:
            if gallery is None or len(gallery) == 0:
                return []
            (result,) = search_face(
                gallery,
                probe.embedding[np.newaxis, :],
                format=probe.format,
                format_version=probe.format_version,
                k=k,
                threshold=threshold,
            )
        best: dict[str, Candidate] = {}
        for c in result.hits:
            if c.subject not in best:
                best[c.subject] = Candidate(c.subject, c.score, _face_fmr(c.score))
        return list(best.values())


def node_restrictions(stored: dict[str, object]) -> list[str]:
    """The policy strings of one record's stored :class:`SharingRestrictions` JSON."""
    r = SharingRestrictions.model_validate(stored or {})
    out: list[str] = []
    if r.no_exchange_consent:
        out.append("no_exchange_consent")
    if r.asylum_nationality:
        out.append(f"asylum_nationality:{r.asylum_nationality}")
    if r.peers is not None:
        out.append("peers:" + ",".join(r.peers) if r.peers else "no_exchange_consent")
    if r.purposes is not None:
        out.append("purposes:" + ",".join(r.purposes) if r.purposes else "no_exchange_consent")
    return out


class RecordRestrictions:
    """``RestrictionLookup`` over the node database: subject keys in, restrictions out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, refs: Sequence[str]) -> list[Restrictions]:
        ids = {r: int(r[1:]) for r in refs if r[:1] == "s" and r[1:].isdigit()}
        strings: dict[int, list[str]] = {}
        query = select(TemplateRecord.subject_id, TemplateRecord.restrictions).where(
            TemplateRecord.subject_id.in_(list(ids.values())),
            TemplateRecord.state == RecordState.ACTIVE,
        )
        with self.engine.connect() as conn:
            for sid, stored in conn.execute(query):
                strings.setdefault(sid, []).extend(node_restrictions(stored))
        # A subject with no active record in the database (a gallery ahead of it) is never
        # shared.
        never = ["no_exchange_consent"]
        return [parse_restrictions(strings.get(ids.get(r, -1), never)) for r in refs]
