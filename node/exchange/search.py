"""The node's :class:`~node.exchange.responder.ProbeSearch` and restriction lookup.

Fingerprint probes are ISO/IEC 19794-2 records (one per finger, or one multi-view record):
every view is searched against the node's fingerprint gallery
(:func:`matcher.search.fingerprint.search_fingerprint`) at the matcher's threshold for the
stricter of the policy's FMR and the FMR that keeps the node's ``search_fpir`` over the
gallery's records, divided over the fingers (the rule of local searches,
:func:`node.thresholds.fingerprint_search_threshold`); a subject is a candidate when one of its
fingers reaches it. (The gallery-rank FMR of :mod:`matcher.search.fusion` is not used: in a
large gallery its best-ranked subject always reaches a small FMR, hit or not.) Face probes are
:class:`~matcher.face.template.FaceTemplate` bytes searched with
:func:`matcher.search.face.search_face` at the cosine threshold for the policy's FMR, made
stricter in the same way (:func:`node.thresholds.face_search_threshold`).

A candidate's ``record_ref`` is the gallery's subject key (``s<id>``, the node's subjects
table); it never leaves the node (peers get an opaque hit reference). Restrictions are those
of every *active* record of the subject, combined so that each one applies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, select

from matcher.errors import MatcherError, TemplateFormatError
from matcher.face.template import FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.face import face_schema
from matcher.search.fingerprint import check_usable, fingerprint_schema
from node.db.models import RecordState, TemplateRecord
from node.exchange.messages import TemplateItem
from node.exchange.responder import Candidate, Probe
from node.restrictions import SharingRestrictions
from node.services.galleries import GallerySet
from node.services.search import (
    MAX_FINGERS,
    check_face_format,
    face_candidates,
    fingerprint_candidates,
)
from node.services.search_pool import SearchPool
from node.thresholds import face_search_threshold, fingerprint_search_threshold
from policy.restrictions import RestrictionError, Restrictions, parse_restrictions

log = logging.getLogger(__name__)

#: Views of unknown finger position (0) one probe may hold. A probe is one person's fingers,
#: each position at most once (``repeated_finger``); views of position 0 escape that check and
#: are each searched against every finger of the gallery, so ten of them, from ten people,
#: tested ten people for one unit of a peer's daily quota. A latent or a single flat is one.
MAX_UNKNOWN_POSITION_VIEWS = 1

#: Template format names this node compares (ISO/IEC 19794-2:2005 records).
FINGERPRINT_FORMATS = frozenset({"iso19794-2:2005", "iso19794-2"})


def decode_fingerprints(templates: Sequence[TemplateItem]) -> list[FingerprintTemplate]:
    """Every finger view of the probe; positions from the item when the record has none. At
    most ``MAX_FINGERS`` views in all, as in officers' searches: each view is a whole 1:N
    search, and a record may hold 255 of them (one query was 2,805 searches, a minute of the
    node's CPU, for one unit of the peer's quota). Positions are not repeated, and at most
    ``MAX_UNKNOWN_POSITION_VIEWS`` view has none."""
    out: list[FingerprintTemplate] = []
    for item in templates:
        if item.format not in FINGERPRINT_FORMATS:
            raise TemplateFormatError(
                f"unsupported fingerprint format {item.format!r}", reason="unsupported_format"
            )
        views = iso19794_2.decode_all(item.raw())
        if len(out) + len(views) > MAX_FINGERS:
            raise MatcherError(
                f"a probe has at most {MAX_FINGERS} finger views", reason="too_many_fingers"
            )
        for view in views:
            if item.finger_position is not None and view.finger_position == 0:
                view = replace(view, finger_position=item.finger_position)
            out.append(view)
    positions = [v.finger_position for v in out if v.finger_position != 0]
    if len(set(positions)) != len(positions):
        raise TemplateFormatError("a finger position is repeated", reason="repeated_finger")
    if len(out) - len(positions) > MAX_UNKNOWN_POSITION_VIEWS:
        raise TemplateFormatError(
            f"a probe holds at most {MAX_UNKNOWN_POSITION_VIEWS} view of unknown finger position"
            " (0); give the others their positions",
            reason="unknown_positions",
        )
    return out


def decode_face(templates: Sequence[TemplateItem]) -> FaceTemplate:
    """The one face template of a face query, its format as the query names it."""
    if len(templates) != 1:
        raise TemplateFormatError("a face query carries one template", reason="bad_probe")
    item = templates[0]
    probe = FaceTemplate.from_bytes(item.raw())
    if (item.format, item.format_version) != (probe.format, probe.format_version):
        raise TemplateFormatError(
            f"the query names {item.format} v{item.format_version}, the template is "
            f"{probe.format} v{probe.format_version}",
            reason="format_mismatch",
        )
    return probe


class GallerySearch:
    """Matches peer probes against the node's galleries, in memory (nothing stored)."""

    def __init__(
        self, galleries: GallerySet, pool: SearchPool | None = None, *, fpir: float = 1e-2
    ) -> None:
        self.galleries = galleries
        self.pool = pool  # fingerprint searches run there when set
        self.fpir = fpir  # the node's FPIR target (``settings.search_fpir``)

    def _inactive(self) -> list[str]:
        """Records between their two commits: never a result (``GallerySet.unsettled``)."""
        return sorted(self.galleries.unsettled())

    def decode(self, modality: str, templates: Sequence[TemplateItem]) -> Probe:
        """The query's templates as a probe this node can compare; reads no gallery record
        (a face probe's format is checked against the formats the node holds)."""
        if not templates:
            raise TemplateFormatError("the query carries no template", reason="no_template")
        if modality == "fingerprint":
            views = decode_fingerprints(templates)
            for view in views:  # what the search would refuse, refused before it is logged
                check_usable(view)
            return Probe(modality, fingerprints=tuple(views))
        if modality == "face":
            face = decode_face(templates)
            with self.galleries.reading(face_schema(face.format, face.format_version)) as gallery:
                check_face_format(face, gallery)
            return Probe(modality, face=face)
        raise TemplateFormatError(f"unsupported modality {modality!r}", reason="bad_modality")

    def __call__(self, probe: Probe, max_candidates: int, fmr: float) -> list[Candidate]:
        if probe.face is not None:
            return self._face(probe.face, max_candidates, fmr)
        return self._fingerprint(list(probe.fingerprints), max_candidates, fmr)

    def _fingerprint(
        self, probes: list[FingerprintTemplate], k: int, fmr: float
    ) -> list[Candidate]:
        inactive = self._inactive()
        with self.galleries.reading(fingerprint_schema()) as gallery:
            if gallery is None or len(gallery) == 0:
                return []
            # The rule of local searches (node.services.search): the stricter of the policy's
            # FMR and the node's FPIR at this gallery's size, over the fingers (Bonferroni).
            threshold, _, _ = fingerprint_search_threshold(
                fmr, self.fpir, len(probes), len(gallery)
            )
            if self.pool is not None:
                found = self.pool.fingerprint(gallery, probes, k, inactive)
            else:
                found = fingerprint_candidates(gallery, probes, k, exclude=inactive)
        return [
            Candidate(c.subject, c.score, c.fmr if c.fmr is not None else 1.0)
            for c in found
            if c.score >= threshold
        ]

    def _face(self, probe: FaceTemplate, k: int, fmr: float) -> list[Candidate]:
        schema = face_schema(probe.format, probe.format_version)
        inactive = frozenset(self._inactive())
        with self.galleries.reading(schema) as gallery:
            check_face_format(probe, gallery)  # else "no match" for a model never compared
            if gallery is None or len(gallery) == 0:
                return []
            threshold, _, _ = face_search_threshold(fmr, self.fpir, len(gallery))
            found = face_candidates(
                self.galleries, gallery, probe, k, threshold, inactive, hits_only=True
            )
        return [Candidate(c.subject, c.score, c.fmr if c.fmr is not None else 1.0) for c in found]


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


#: The restrictions of the active records of some subjects (built once; every hit runs it).
_ACTIVE_RESTRICTIONS = select(TemplateRecord.subject_id, TemplateRecord.restrictions).where(
    TemplateRecord.subject_id.in_(bindparam("ids", expanding=True)),
    TemplateRecord.state == RecordState.ACTIVE,
)


class RecordRestrictions:
    """``RestrictionLookup`` over the node database: subject keys in, restrictions out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, refs: Sequence[str]) -> list[Restrictions]:
        ids = {r: int(r[1:]) for r in refs if r[:1] == "s" and r[1:].isdigit()}
        strings: dict[int, list[str]] = {}
        unreadable: set[int] = set()
        if ids:
            with self.engine.connect() as conn:
                for sid, stored in conn.execute(_ACTIVE_RESTRICTIONS, {"ids": list(ids.values())}):
                    try:
                        strings.setdefault(sid, []).extend(node_restrictions(stored))
                    except ValidationError:
                        unreadable.add(sid)
        # A subject with no active record in the database (a gallery ahead of it) is never
        # shared.
        never = ["no_exchange_consent"]
        return [self._parse(ids.get(r, -1), strings, unreadable, never) for r in refs]

    @staticmethod
    def _parse(
        sid: int, strings: dict[int, list[str]], unreadable: set[int], never: list[str]
    ) -> Restrictions:
        """A record whose stored restrictions do not parse (written before a rule tightened,
        or edited by hand) is never shared: failing closed keeps the reply a plain no-hit,
        where an error would tell the requester that this record matched."""
        try:
            if sid not in unreadable:
                return parse_restrictions(strings.get(sid, never))
        except RestrictionError:
            pass
        log.warning("subject %d: stored sharing restrictions unreadable; not shared", sid)
        return Restrictions(unreadable=True)
