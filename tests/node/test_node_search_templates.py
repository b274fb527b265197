"""Officers' 1:N search with ISO/IEC 19794-2 template probes, and the combined fingers-and-face
search fused per subject. The gallery holds synthetic minutiae templates (finger position 2)
and random face embeddings of the same people."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from fastapi import FastAPI
from node_support import TestClient, bearer
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from matcher.face.template import FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.search.fusion import fused_fmr
from matcher.synthetic import synthetic_templates
from node.api.app import create_app
from node.db.models import AuditEvent, Modality, Role
from node.services.enrolment import Capture, EnrolmentService, Extracted
from node.services.galleries import GallerySet
from node.settings import Settings
from node.thresholds import face_fmr, fingerprint_fmr

PEOPLE = 6
MATE = 3
POSITION = 2
#: The strictest rows of the measured tables (fingerprint, face).
FP_FLOOR = fingerprint_fmr(math.inf)
MATE_FACE_FMR = face_fmr(0.95)  # the measured FMR of a mate_face's cosine


Refusal = Callable[[dict[str, object]], object]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    """Two impressions of PEOPLE synthetic fingers: [0] enrolled, [1] the probe."""
    return synthetic_templates(PEOPLE, 2, seed=3)


@pytest.fixture(scope="module")
def stranger() -> FingerprintTemplate:
    """A finger enrolled nowhere."""
    return synthetic_templates(1, 2, seed=77)[0][1]


@pytest.fixture
def faces(
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    fingers: list[list[FingerprintTemplate]],
) -> list[FaceTemplate]:
    """person-i enrolled with finger i at POSITION and a random face."""
    rng = np.random.default_rng(5)
    templates = [FaceTemplate(unit(rng), 90) for _ in range(PEOPLE)]
    items = [
        Extracted(Capture(f"person-{i}", Modality.FINGERPRINT, b"", POSITION), f[0], 80)
        for i, f in enumerate(fingers)
    ] + [
        Extracted(Capture(f"person-{i}", Modality.FACE, b""), t, t.quality)
        for i, t in enumerate(templates)
    ]
    with sessions() as s:
        enrolled = EnrolmentService(s, galleries).enrol_extracted(items, actor="test")
    assert len(enrolled) == 2 * PEOPLE
    return templates


def record(template: FingerprintTemplate, position: int = 0) -> str:
    """The base64 ISO/IEC 19794-2 record of one finger view at ``position``."""
    return b64(iso19794_2.encode(replace(template, finger_position=position)))


def mate_face(face: FaceTemplate, rng: np.random.Generator) -> str:
    """A face template at cosine 0.95 from ``face`` (above both measured thresholds)."""
    noise = unit(rng)
    noise -= np.dot(noise, face.embedding) * face.embedding
    noise /= np.linalg.norm(noise)
    mate = 0.95 * face.embedding + np.sqrt(1 - 0.95**2) * noise
    return b64(FaceTemplate(mate.astype(np.float32), 80).to_bytes())


@pytest.fixture
def search_app(settings: Settings, engine: Engine, galleries: GallerySet) -> FastAPI:
    return create_app(
        settings.model_copy(update={"search_fmr": 1e-4}), engine=engine, gallery=galleries
    )


def test_template_probe_hits_its_mate_and_a_stranger_does_not(
    search_app: FastAPI,
    make_token: object,
    fingers: list[list[FingerprintTemplate]],
    stranger: FingerprintTemplate,
    faces: list[FaceTemplate],
    sessions: sessionmaker[Session],
) -> None:
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    mate = {"fingers": [{"position": POSITION, "template": record(fingers[MATE][1])}], "k": 3}
    # A record without a position takes the given one; one with it needs no position given.
    other = {"fingers": [{"template": record(stranger, POSITION)}], "k": 3}
    with TestClient(search_app) as c:
        found = c.post("/search/fingerprint", headers=officer, json=mate).json()
        missed = c.post("/search/fingerprint", headers=officer, json=other).json()
    assert found["hit"] is True and found["gallery_size"] == PEOPLE
    assert found["candidates"][0]["subject"] == f"person-{MATE}"
    assert found["candidates"][0]["fmr"] == pytest.approx(FP_FLOOR)
    assert missed["hit"] is False and len(missed["candidates"]) == 3
    assert missed["candidates"][0]["fmr"] == 1.0  # below the measured table
    with sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "search.fingerprint"))
        assert [e.details for e in events] == [
            {"fingers": 1, "hit": True, "candidates": 3},
            {"fingers": 1, "hit": False, "candidates": 3},
        ]


def test_a_record_of_several_views_gives_the_view_at_the_position(
    search_app: FastAPI,
    make_token: object,
    fingers: list[list[FingerprintTemplate]],
    stranger: FingerprintTemplate,
    faces: list[FaceTemplate],
) -> None:
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    views = [replace(stranger, finger_position=3), replace(fingers[MATE][1], finger_position=2)]
    data = b64(iso19794_2.encode_views(views))
    with TestClient(search_app) as c:
        at_2 = c.post(
            "/search/fingerprint",
            headers=officer,
            json={"fingers": [{"position": 2, "template": data}]},
        )
        unknown = c.post(
            "/search/fingerprint", headers=officer, json={"fingers": [{"template": data}]}
        )
    assert at_2.json()["hit"] is True
    assert at_2.json()["candidates"][0]["subject"] == f"person-{MATE}"
    assert (unknown.status_code, unknown.json()) == (
        422,
        {
            "error": "bad_probe",
            "detail": "the record holds several finger views: give the position of exactly one "
            "of them",
        },
    )


ONE_OF = "body.fingers.0: Value error, give the finger's image or its template (exactly one)"


@pytest.fixture
def refusal(client: TestClient, make_token: object) -> Refusal:
    """POSTs one finger to /search/fingerprint (empty gallery); returns (status, body)."""
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]

    def post(finger: dict[str, object]) -> object:
        r = client.post("/search/fingerprint", headers=officer, json={"fingers": [finger]})
        return r.status_code, r.json()

    return post


@pytest.fixture(scope="module")
def valid_record(fingers: list[list[FingerprintTemplate]]) -> bytes:
    return iso19794_2.encode(replace(fingers[0][1], finger_position=2))


def test_image_and_template_both_given_is_refused(refusal: Refusal) -> None:
    finger = {"position": 2, "image": b64(b"x"), "template": b64(b"y")}
    assert refusal(finger) == (422, {"error": "invalid_request", "detail": ONE_OF})


def test_neither_image_nor_template_is_refused(refusal: Refusal) -> None:
    assert refusal({"position": 2}) == (422, {"error": "invalid_request", "detail": ONE_OF})


def test_malformed_template_is_refused(refusal: Refusal) -> None:
    detail = "ISO/IEC 19794-2 record: 8 bytes is shorter than the 24-byte header"
    assert refusal({"template": b64(b"FMR\0 20\0")}) == (
        422,
        {"error": "truncated", "detail": detail},
    )


def test_template_of_another_version_is_refused(refusal: Refusal, valid_record: bytes) -> None:
    v2011 = valid_record[:4] + b"030\0" + valid_record[8:]  # ISO/IEC 19794-2:2011's tag
    detail = "ISO/IEC 19794-2 record: version b'030\\x00' is not ' 20\\0' (2005)"
    assert refusal({"template": b64(v2011)}) == (422, {"error": "bad_version", "detail": detail})


def test_template_of_another_finger_position_is_refused(
    refusal: Refusal, valid_record: bytes
) -> None:
    detail = "the record's finger position 2 is not the given 3"
    assert refusal({"position": 3, "template": b64(valid_record)}) == (
        422,
        {"error": "bad_probe", "detail": detail},
    )


def test_combined_probe_fuses_fingers_and_face_per_subject(
    search_app: FastAPI,
    make_token: object,
    fingers: list[list[FingerprintTemplate]],
    faces: list[FaceTemplate],
    sessions: sessionmaker[Session],
) -> None:
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    rng = np.random.default_rng(9)
    finger = {"position": POSITION, "template": record(fingers[MATE][1])}
    both = {"fingers": [finger], "face": {"template": mate_face(faces[MATE], rng)}, "k": 3}
    stranger_face = b64(FaceTemplate(unit(rng), 80).to_bytes())
    wrong_face = {**both, "face": {"template": stranger_face}}
    with TestClient(search_app) as c:
        found = c.post("/search", headers=officer, json=both).json()
        mixed = c.post("/search", headers=officer, json=wrong_face).json()
        alone = c.post("/search", headers=officer, json={"fingers": [finger]}).json()
    # Both modalities agree: Fisher's method on the two FMR estimates.
    z = -math.log10(FP_FLOOR) - math.log10(MATE_FACE_FMR)
    assert found["fingerprint"]["hit"] is True and found["face"]["hit"] is True
    assert found["fused"]["hit"] is True and found["fused"]["decision_fmr"] == 1e-4
    best = found["fused"]["candidates"][0]
    assert best["subject"] == f"person-{MATE}" and best["score"] == pytest.approx(z)
    assert best["fmr"] == pytest.approx(float(fused_fmr(z, 2)))
    assert (best["fingerprint_fmr"], best["face_fmr"]) == (pytest.approx(FP_FLOOR), MATE_FACE_FMR)
    # The face speaks against the mate: its fused FMR is the fingerprint's combined with a face
    # FMR of 1, weaker than the fingerprint alone (at its table's floor), yet still a hit.
    assert mixed["fingerprint"]["hit"] is True and mixed["face"]["hit"] is False
    against = mixed["fused"]["candidates"][0]
    assert against["subject"] == f"person-{MATE}" and against["face_fmr"] is None
    assert against["fmr"] == pytest.approx(float(fused_fmr(-math.log10(FP_FLOOR), 2)))
    assert FP_FLOOR < against["fmr"] <= 1e-4 and mixed["fused"]["hit"] is True
    # Fingers alone: the fused decision is the fingerprint search's, at the target (the table
    # reaches it: its floor is stricter).
    assert alone["face"] is None and alone["fused"]["hit"] is alone["fingerprint"]["hit"] is True
    assert alone["fused"]["decision_fmr"] == 1e-4 and FP_FLOOR < 1e-4
    with sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "search.combined"))
        assert [(e.details["face"], e.details["hit"]) for e in events] == [
            (True, True),
            (True, True),
            (False, True),
        ]


def test_fingers_only_searches_decide_as_their_fused_answer(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    make_token: object,
    fingers: list[list[FingerprintTemplate]],
    stranger: FingerprintTemplate,
    faces: list[FaceTemplate],
) -> None:
    """Two fingers where the FPIR target decides: a subject is held to the FMR that keeps the
    FPIR over the gallery's records, each finger to half of it, once (counting the fingers in
    the comparisons too held each finger to a quarter, so the fingerprint answer could say no
    hit where its own fused answer said hit)."""
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    update = {"search_fmr": 0.05, "search_fpir": 0.01}
    app = create_app(settings.model_copy(update=update), engine=engine, gallery=galleries)
    other = {"position": POSITION + 1, "template": record(fingers[1][1])}
    probes = [stranger, fingers[MATE][1]]
    with TestClient(app) as c:
        outs = [
            c.post(
                "/search",
                headers=officer,
                json={"fingers": [{"position": POSITION, "template": record(p)}, other]},
            ).json()
            for p in probes
        ]
    subject = -math.expm1(math.log1p(-0.01) / PEOPLE)  # 1.67e-3 for the gallery's 6 records
    for out in outs:
        finger = out["fingerprint"]
        assert finger["gallery_size"] == PEOPLE
        assert finger["threshold_fmr"] == pytest.approx(subject / 2, rel=1e-9)
        assert out["fused"]["decision_fmr"] == pytest.approx(subject, rel=1e-9)
        assert finger["fpir"] == pytest.approx(0.01, rel=1e-3) and finger["fpir"] <= 0.01
        assert out["fused"]["hit"] is finger["hit"]
    assert [out["fingerprint"]["hit"] for out in outs] == [False, True]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"k": 3}, "body: Value error, give fingers, a face or both"),
        (
            {"face": {"image": b64(b"x"), "template": b64(b"y")}},
            "body.face: Value error, give the face's image or its template (exactly one)",
        ),
    ],
)
def test_combined_refusals(
    client: TestClient, make_token: object, body: dict[str, object], detail: str
) -> None:
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    r = client.post("/search", headers=officer, json=body)
    assert (r.status_code, r.json()) == (422, {"error": "invalid_request", "detail": detail})


def test_combined_search_needs_officer(client: TestClient, make_token: object) -> None:
    operator = bearer(make_token(Role.OPERATOR))  # type: ignore[operator]
    r = client.post("/search", headers=operator, json={})
    assert (r.status_code, r.json()["error"]) == (403, "wrong_role")


def test_a_modality_a_subject_was_never_enrolled_in_does_not_speak_against_it(
    search_app: FastAPI,
    make_token: object,
    faces: list[FaceTemplate],
    sessions: sessionmaker[Session],
    galleries: GallerySet,
) -> None:
    """A subject with fingers only, probed with its finger and someone's face: the fused
    decision is the fingerprint's (the face counted as a non-match made such a subject never
    a fused hit at the default target, so adding a face lost a certain fingerprint hit)."""
    only = synthetic_templates(1, 2, seed=123)[0]
    capture = Capture("finger-only", Modality.FINGERPRINT, b"", POSITION)
    with sessions() as s:
        EnrolmentService(s, galleries).enrol_extracted(
            [Extracted(capture, only[0], 80)], actor="test"
        )
    officer = bearer(make_token(Role.OFFICER))  # type: ignore[operator]
    finger = {"position": POSITION, "template": record(only[1])}
    probe = {"fingers": [finger], "face": {"template": b64(faces[0].to_bytes())}, "k": 3}
    with TestClient(search_app) as c:
        found = c.post("/search", headers=officer, json=probe).json()
    assert found["fingerprint"]["hit"] is True
    best = found["fused"]["candidates"][0]
    assert best["subject"] == "finger-only" and best["face_fmr"] is None
    assert best["fmr"] == pytest.approx(best["fingerprint_fmr"])  # one modality fused
    assert found["fused"]["hit"] is True
    assert found["fused"]["decision_fmr"] == 1e-4  # the fingerprint's target
