"""Local search counts a subject's *active* records only, and k counts subjects: a record
mid-enrolment or mid-deletion is never a result, and neither it nor a subject's other records
crowd an active subject out of the top k (service level, real gallery and database)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from matcher.face.template import FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.template import FingerprintTemplate
from matcher.synthetic.templates import synthetic_templates
from node.db.models import Modality
from node.services.enrolment import Capture, EnrolmentService, Extracted
from node.services.galleries import GallerySet
from node.services.records import RecordService
from node.services.search import FingerProbe, SearchService


@pytest.fixture(scope="module")
def fingers() -> list[list[FingerprintTemplate]]:
    return synthetic_templates(4, 3, seed=1)  # [finger][impression]


def enrol(
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    items: Sequence[tuple[str, FingerprintTemplate | FaceTemplate, int | None]],
) -> None:
    extracted = [
        Extracted(
            Capture(
                subject,
                Modality.FACE if position is None else Modality.FINGERPRINT,
                b"",
                finger_position=position,
            ),
            template,
            60,
        )
        for subject, template, position in items
    ]
    with sessions() as s:
        EnrolmentService(s, galleries).enrol_extracted(extracted, actor="test")


def finger_search(
    sessions: sessionmaker[Session], galleries: GallerySet, probe: FingerprintTemplate, k: int
) -> list[str]:
    with sessions() as s:
        out = SearchService(s, galleries, target_fmr=1e-3, target_fpir=0.5).search_fingerprints(
            [FingerProbe(template=iso19794_2.encode(probe), finger_position=2)], k=k, actor="t"
        )
    return [c.subject for c in out.candidates]


def during(galleries: GallerySet, name: str, run: Callable[[], object]) -> dict[str, object]:
    """Run ``run()`` inside the gallery set's ``name`` step (append or remove), as a concurrent
    officer request would between an enrolment's or deletion's two commits."""
    seen: dict[str, object] = {}
    step = getattr(galleries, name)

    def wrapped(*args: object) -> None:
        if name == "append":
            step(*args)
            seen["result"] = run()
        else:
            seen["result"] = run()
            step(*args)

    setattr(galleries, name, wrapped)
    return seen


def test_a_record_being_enrolled_is_not_a_result(
    sessions: sessionmaker[Session], galleries: GallerySet, fingers: list[list[FingerprintTemplate]]
) -> None:
    enrol(sessions, galleries, [("alice", fingers[1][0], 3), ("bob", fingers[2][0], 2)])
    probe = fingers[0][2]
    seen = during(galleries, "append", lambda: finger_search(sessions, galleries, probe, 10))
    enrol(sessions, galleries, [("alice", fingers[0][0], 2)])  # alice's matching finger, pending
    del galleries.append  # the instance attribute: back to the class's method
    assert seen["result"] == [] or seen["result"][0] != "alice"  # type: ignore[index]
    assert finger_search(sessions, galleries, probe, 10)[0] == "alice"  # once active


def test_a_subject_being_deleted_does_not_crowd_out_an_active_one(
    sessions: sessionmaker[Session], galleries: GallerySet, fingers: list[list[FingerprintTemplate]]
) -> None:
    probe = fingers[0][2]
    enrol(sessions, galleries, [("bob", fingers[0][0], 2), ("dup", probe, 2)])
    seen = during(galleries, "remove", lambda: finger_search(sessions, galleries, probe, 1))
    with sessions() as s:
        RecordService(s, galleries).delete_subject("dup", actor="t")
    del galleries.remove
    assert seen["result"] == ["bob"]


def test_k_counts_subjects_not_records(
    sessions: sessionmaker[Session], galleries: GallerySet, fingers: list[list[FingerprintTemplate]]
) -> None:
    """Alice holds two impressions of the probed finger: k = 3 still gives three subjects."""
    enrol(
        sessions,
        galleries,
        [
            ("alice", fingers[0][2], 2),
            ("alice", fingers[0][1], 2),
            ("bob", fingers[0][0], 2),
            ("carol", fingers[3][0], 2),
        ],
    )
    found = finger_search(sessions, galleries, fingers[0][2], 3)
    assert len(found) == 3 and found[0] == "alice" and set(found) == {"alice", "bob", "carol"}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_a_face_subject_scores_its_best_record(
    sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    """Records come in CSLS order; the subject's score is still its best cosine (it was the
    first record's, which CSLS may rank ahead of a closer one)."""
    # probe p; alice's closer record (cosine 0.95) sits in a tight crowd of other people's
    # records (a high CSLS offset), her other one (0.94) on another side, alone: CSLS ranks the
    # 0.94 record first. Both are above the threshold at FMR 1e-2 (0.91).
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((128, 3)))[0].T
    p, o1, o2 = basis
    probe = _unit(p)
    nearer = _unit(p + np.tan(np.arccos(0.95)) * o1)
    near = _unit(p + np.tan(np.arccos(0.94)) * o2)
    rng = np.random.default_rng(1)
    crowd = [_unit(nearer + 0.03 * _unit(rng.standard_normal(128))) for _ in range(12)]
    items: list[tuple[str, FingerprintTemplate | FaceTemplate, int | None]] = [
        ("alice", FaceTemplate(nearer, 90), None),
        ("alice", FaceTemplate(near, 90), None),
    ]
    items += [(f"x{i}", FaceTemplate(c, 90), None) for i, c in enumerate(crowd)]
    enrol(sessions, galleries, items)
    with sessions() as s:
        out = SearchService(s, galleries, target_fmr=1e-2, target_fpir=0.5).search_face(
            template=FaceTemplate(probe, 90).to_bytes(), k=20, actor="t"
        )
    alice = next(c for c in out.candidates if c.subject == "alice")
    assert alice.score == pytest.approx(float(probe @ nearer), abs=1e-5)


def test_a_face_template_of_another_format_is_refused(
    sessions: sessionmaker[Session], galleries: GallerySet
) -> None:
    from matcher.errors import TemplateFormatError

    embedding = _unit(np.random.default_rng(1).standard_normal(128))
    enrol(sessions, galleries, [("alice", FaceTemplate(embedding, 90), None)])
    foreign = FaceTemplate(embedding, 90, "other-model/hog")
    with sessions() as s, pytest.raises(TemplateFormatError) as err:
        SearchService(s, galleries, target_fmr=1e-3, target_fpir=0.5).search_face(
            template=foreign.to_bytes(), k=5, actor="t"
        )
    assert err.value.reason == "incompatible_format"


def test_a_peer_search_skips_records_between_commits(
    sessions: sessionmaker[Session], galleries: GallerySet, fingers: list[list[FingerprintTemplate]]
) -> None:
    """The peer path reads the gallery set's unsettled references (no database query per
    query): a record mid-enrolment is not a candidate, and is one once active."""
    from node.exchange.messages import TemplateItem, b64url
    from node.exchange.search import GallerySearch

    enrol(sessions, galleries, [("bob", fingers[2][0], 2)])
    item = TemplateItem(
        format="iso19794-2:2005",
        format_version=20,
        finger_position=2,
        data=b64url(iso19794_2.encode(fingers[0][2])),
    )
    peer = GallerySearch(galleries)
    seen = during(galleries, "append", lambda: peer(peer.decode("fingerprint", [item]), 5, 1e-2))
    enrol(sessions, galleries, [("alice", fingers[0][0], 2)])
    del galleries.append
    assert seen["result"] == [] and galleries.unsettled() == frozenset()
    assert len(peer(peer.decode("fingerprint", [item]), 5, 1e-2)) == 1  # alice, now active


def test_overlapping_marks_each_settle_their_own(galleries: GallerySet) -> None:
    """An enrolment and a subject's deletion in flight over the same reference (the deletion
    lists the enrolment's pending row): the first to finish must not release the record while
    the other is still between its commits."""
    galleries.unsettle(["r1", "r2"])  # the enrolment's rows
    galleries.unsettle(["r0", "r2"])  # the deletion lists the subject's rows, r2 among them
    galleries.settle(["r1", "r2"])  # the enrolment gives up (subject_deleted)
    assert galleries.unsettled() == frozenset({"r0", "r2"})
    galleries.settle(["r0", "r2"])  # the deletion's last commit
    assert galleries.unsettled() == frozenset()
    galleries.settle(["r9"])  # reconcile settles rows no one marked in this process
    galleries.unsettle(["r9"])
    assert galleries.unsettled() == frozenset({"r9"})  # the settle above left no debt


def test_a_deletion_whose_first_commit_fails_leaves_the_records_searchable(
    sessions: sessionmaker[Session],
    galleries: GallerySet,
    fingers: list[list[FingerprintTemplate]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deletion marks the records before its first commit; when that commit fails (say
    the database is locked) the records stay active, and their marks must go with it (else
    peer searches skip them until the node restarts)."""
    from sqlalchemy.exc import OperationalError

    enrol(sessions, galleries, [("alice", fingers[0][0], 2)])
    with sessions() as s:
        real = s.commit

        def locked() -> None:
            monkeypatch.setattr(s, "commit", real)
            raise OperationalError("COMMIT", {}, Exception("database is locked"))

        monkeypatch.setattr(s, "commit", locked)
        with pytest.raises(OperationalError):
            RecordService(s, galleries).delete_subject("alice", actor="t")
    assert galleries.unsettled() == frozenset()
    assert finger_search(sessions, galleries, fingers[0][1], 5) == ["alice"]
