"""``POST /search/fingerprint`` (one to ten fingers, images or ISO/IEC 19794-2 records),
``POST /search/face`` and ``POST /search`` (fingers and/or a face, fused per subject): 1:N
search (officers)."""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import GallerySetDep, OfficerUser, SessionDep, SettingsDep, actor
from node.api.schemas.common import errors
from node.api.schemas.search import (
    CandidateOut,
    CombinedSearchIn,
    CombinedSearchOut,
    FaceSearchIn,
    FaceSearchOut,
    FingerIn,
    FingerprintSearchIn,
    FusedCandidateOut,
    FusedOut,
    SearchOut,
)
from node.services.search import (
    Candidate,
    FaceOutcome,
    FaceProbe,
    FingerProbe,
    SearchOutcome,
    SearchService,
)

router = APIRouter(tags=["search"], responses=errors(409, 415))


def _probes(fingers: list[FingerIn]) -> list[FingerProbe]:
    return [FingerProbe(f.image, f.template, f.position) for f in fingers]


def _candidates(found: list[Candidate]) -> list[CandidateOut]:
    return [CandidateOut(subject=c.subject, score=c.score, fmr=c.fmr) for c in found]


def _fingerprint_out(outcome: SearchOutcome) -> SearchOut:
    return SearchOut(
        hit=outcome.hit,
        target_fmr=outcome.target_fmr,
        threshold=outcome.threshold,
        threshold_fmr=outcome.threshold_fmr,
        gallery_size=outcome.gallery_size,
        target_fpir=outcome.target_fpir,
        fpir=outcome.fpir,
        candidates=_candidates(outcome.candidates),
    )


def _face_out(outcome: FaceOutcome) -> FaceSearchOut:
    return FaceSearchOut(
        hit=outcome.hit,
        target_fmr=outcome.target_fmr,
        threshold=outcome.threshold,
        threshold_fmr=outcome.threshold_fmr,
        gallery_size=outcome.gallery_size,
        target_fpir=outcome.target_fpir,
        fpir=outcome.fpir,
        candidates=_candidates(outcome.candidates),
        notes=list(outcome.notes),
    )


@router.post("/search/fingerprint")
def search_fingerprint(
    body: FingerprintSearchIn,
    officer: OfficerUser,
    session: SessionDep,
    settings: SettingsDep,
    galleries: GallerySetDep,
) -> SearchOut:
    service = SearchService(
        session, galleries, target_fmr=settings.search_fmr, target_fpir=settings.search_fpir
    )
    outcome = service.search_fingerprints(_probes(body.fingers), k=body.k, actor=actor(officer))
    return _fingerprint_out(outcome)


@router.post("/search/face")
def search_face(
    body: FaceSearchIn,
    officer: OfficerUser,
    session: SessionDep,
    settings: SettingsDep,
    galleries: GallerySetDep,
) -> FaceSearchOut:
    service = SearchService(
        session, galleries, target_fmr=settings.search_fmr, target_fpir=settings.search_fpir
    )
    outcome = service.search_face(
        image=body.image, template=body.template, k=body.k, actor=actor(officer)
    )
    return _face_out(outcome)


@router.post("/search")
def search(
    body: CombinedSearchIn,
    officer: OfficerUser,
    session: SessionDep,
    settings: SettingsDep,
    galleries: GallerySetDep,
) -> CombinedSearchOut:
    service = SearchService(
        session, galleries, target_fmr=settings.search_fmr, target_fpir=settings.search_fpir
    )
    face = None if body.face is None else FaceProbe(body.face.image, body.face.template)
    outcome = service.search(_probes(body.fingers), face, k=body.k, actor=actor(officer))
    fused = outcome.fused
    return CombinedSearchOut(
        fingerprint=None if outcome.fingerprint is None else _fingerprint_out(outcome.fingerprint),
        face=None if outcome.face is None else _face_out(outcome.face),
        fused=FusedOut(
            hit=fused.hit,
            target_fmr=fused.target_fmr,
            decision_fmr=fused.decision_fmr,
            target_fpir=fused.target_fpir,
            fpir=fused.fpir,
            candidates=[
                FusedCandidateOut(
                    subject=c.subject,
                    score=c.score,
                    fmr=c.fmr,
                    fingerprint_fmr=c.fingerprint_fmr,
                    face_fmr=c.face_fmr,
                )
                for c in fused.candidates
            ],
        ),
    )
