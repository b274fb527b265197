"""The node's start-up with the exchange set up: what runs before it serves."""

from __future__ import annotations

from pathlib import Path

from node_support import TestClient


def test_the_start_up_reconcile_reaches_the_exchange_log(tmp_path: Path) -> None:
    """A deletion a crash interrupted is finished by the start-up reconcile; its audit row is
    mirrored to the tamper-evident log like every other node action (the reconcile used to
    run before the mirroring started)."""
    import json

    from sqlalchemy import create_engine

    from certs.pki.bootstrap import build_region, write_region
    from matcher.search.fingerprint import fingerprint_records, fingerprint_schema
    from matcher.synthetic import synthetic_templates
    from node.api.app import create_app
    from node.db.models import Modality, RecordState
    from node.exchange.setup import open_transparency_log
    from node.services.galleries import subject_key
    from node.services.records import NewRecord, RecordService
    from node.settings import Settings

    region = tmp_path / "region"
    write_region(build_region(["TH", "ID"]), region)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'version = "r-1"\ncountry = "TH"\n[peers.ID]\npurposes = ["border_control"]\n'
        'modalities = ["fingerprint"]\ndaily_quota = { fingerprint = 10 }\n'
    )
    settings = Settings(country="TH", data_dir=tmp_path / "th", pki_dir=region, policy_file=rules)
    finger = synthetic_templates(1, 1, seed=3)[0][0]
    app = create_app(settings)
    with TestClient(app):
        galleries = app.state.gallery

        def write(rows: object) -> None:
            refs = [r.reference for r in rows]  # type: ignore[attr-defined]
            subjects = [subject_key(r.subject_id) for r in rows]  # type: ignore[attr-defined]
            galleries.append(fingerprint_schema(), fingerprint_records(refs, subjects, [finger]))

        with app.state.sessions() as session:
            service = RecordService(session, galleries)
            item = NewRecord("case-1", Modality.FINGERPRINT, "iso19794-2:2005", 20)
            (row,) = service.enrol([item], write, actor="user:op")
            service.records.set_state([row.reference], RecordState.DELETING)
            session.commit()  # the process died here, before the gallery removal
    with TestClient(create_app(settings)):
        pass  # the start-up reconcile finishes the deletion
    engine = create_engine(settings.db_url)
    try:
        events = [json.loads(e.data) for e in open_transparency_log(settings, engine).entries()]
    finally:
        engine.dispose()
    actions = [(e["actor"], e["action"]) for e in events if e.get("type") == "node_action"]
    assert ("system", "records.reconcile") in actions
