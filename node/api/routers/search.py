"""``POST /search/fingerprint`` (one to ten fingers) and ``POST /search/face``: 1:N search
(officers)."""

from __future__ import annotations

from fastapi import APIRouter

from node.api.deps import GallerySetDep, OfficerUser, SessionDep, SettingsDep, actor
from node.api.schemas.common import ERROR_RESPONSES
from node.api.schemas.search import (
    CandidateOut,
    FaceSearchIn,
    FaceSearchOut,
    FingerprintSearchIn,
    SearchOut,
)
from node.services.search import FingerProbe, SearchService

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


@router.post("/search/fingerprint")
def search_fingerprint(
    body: FingerprintSearchIn,
    officer: OfficerUser,
    session: SessionDep,
    settings: SettingsDep,
    galleries: GallerySetDep,
) -> SearchOut:
    probes = [FingerProbe(f.image, f.position) for f in body.fingers]
    service = SearchService(session, galleries, target_fmr=settings.search_fmr)
    outcome = service.search_fingerprints(probes, k=body.k, actor=actor(officer))
    return SearchOut(
        hit=outcome.hit,
        target_fmr=outcome.target_fmr,
        gallery_size=outcome.gallery_size,
        candidates=[
            CandidateOut(subject=c.subject, score=c.score, fmr=c.fmr) for c in outcome.candidates
        ],
    )


@router.post("/search/face")
def search_face(
    body: FaceSearchIn,
    officer: OfficerUser,
    session: SessionDep,
    settings: SettingsDep,
    galleries: GallerySetDep,
) -> FaceSearchOut:
    service = SearchService(session, galleries, target_fmr=settings.search_fmr)
    outcome = service.search_face(
        image=body.image, template=body.template, k=body.k, actor=actor(officer)
    )
    return FaceSearchOut(
        hit=outcome.hit,
        target_fmr=outcome.target_fmr,
        threshold=outcome.threshold,
        threshold_fmr=outcome.threshold_fmr,
        gallery_size=outcome.gallery_size,
        candidates=[
            CandidateOut(subject=c.subject, score=c.score, fmr=c.fmr) for c in outcome.candidates
        ],
    )
