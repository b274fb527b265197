"""Alembic migrations: the migrated schema is the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import (
    CheckConstraint,
    Connection,
    Engine,
    MetaData,
    Table,
    delete,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from certs.translog.keys import SigningKey
from certs.translog.store import TransparencyLog
from node.cli import main
from node.db.engine import create_db_engine
from node.db.migrate import alembic_config, current_revision, head_revision, require_head, upgrade
from node.db.schema import target_metadata
from node.errors import ConfigError
from node.exchange.search import _ACTIVE_RESTRICTIONS


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        metadata: Any = target_metadata()  # alembic accepts a list of MetaData
        return list(compare_metadata(context, metadata))


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert schema_diff(engine) == []
    assert current_revision(engine) == head_revision(engine)


def test_upgrade_is_idempotent_and_downgrade_reverses(fresh_db_url: str) -> None:
    engine = create_db_engine(fresh_db_url)
    upgrade(engine)
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert current_revision(engine) is None
    assert not {"subjects", "template_records", "users"} & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert schema_diff(engine) == []
    engine.dispose()


def test_require_head_refuses_an_empty_database(fresh_db_url: str) -> None:
    engine = create_db_engine(fresh_db_url)
    try:
        with pytest.raises(ConfigError, match="bdx db upgrade") as info:
            require_head(engine)
        assert info.value.reason == "schema_out_of_date"
    finally:
        engine.dispose()


def test_new_sqlite_file_is_owner_only(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'x.sqlite3'}")
    upgrade(engine)
    engine.dispose()
    assert (tmp_path / "sub" / "x.sqlite3").stat().st_mode & 0o077 == 0


def test_statement_parameters_stay_out_of_errors_and_logs(
    fresh_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy's statement log and the statement it quotes in a database error carry no
    parameter: they are subject ids, hit references, token hashes, log entries. (PostgreSQL's
    own message may quote a key; the node logs a database error's type, never its text.)"""
    import logging

    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    engine = create_db_engine(fresh_db_url)
    try:
        upgrade(engine)
        secret = "case-4711-secret"
        insert = text("INSERT INTO exchange_nonces (sender, nonce, seen_at) VALUES (:s, :n, :t)")
        row = {"s": "TH", "n": secret, "t": datetime.now(UTC)}
        with engine.begin() as conn:
            conn.execute(insert, row)
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
            engine.echo = True
            try:
                with pytest.raises(IntegrityError) as info, engine.begin() as conn:
                    conn.execute(insert, row)
            finally:
                engine.echo = False
        assert "SQL parameters hidden" in str(info.value) and repr(row) not in str(info.value)
        assert "INSERT INTO exchange_nonces" in caplog.text and secret not in caplog.text
    finally:
        engine.dispose()


def test_malformed_database_url() -> None:
    with pytest.raises(ConfigError) as info:
        create_db_engine("not a url")
    assert info.value.reason == "bad_database_url"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_db_cli_upgrade_and_current(
    fresh_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", fresh_db_url)
    code, out, _ = run_cli(["db", "current", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["up_to_date"] is False
    code, out, _ = run_cli(["db", "upgrade"], capsys)
    assert (code, out.strip()) == (0, "database at revision 0014")
    code, out, _ = run_cli(["db", "current"], capsys)
    assert "up to date" in out
    code, _, err = run_cli(["db", "upgrade", "--revision", "bogus"], capsys)  # was a traceback
    assert code == 2 and "[unknown_revision]" in err and len(err.strip().splitlines()) == 1


def test_db_cli_upgrade_json(
    fresh_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bdx db upgrade --json` prints the revisions before and after and the latest one (it had
    no --json); a refused upgrade under --json prints nothing on stdout, one line on stderr."""
    monkeypatch.setenv("BDX_DATABASE_URL", fresh_db_url)
    engine = create_db_engine(fresh_db_url)
    try:
        head = head_revision(engine)
    finally:
        engine.dispose()
    code, out, _ = run_cli(["db", "upgrade", "--revision", "0005", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"previous": None, "current": "0005", "head": head}
    code, out, _ = run_cli(["db", "upgrade", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"previous": "0005", "current": head, "head": head}
    code, out, err = run_cli(["db", "upgrade", "--revision", "bogus", "--json"], capsys)
    assert (code, out) == (2, "") and err.rstrip().endswith("[unknown_revision]"), err
    assert len(err.splitlines()) == 1


def test_a_database_a_newer_bdx_upgraded_is_named_so(
    fresh_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rolling bdx back, `bdx db upgrade` was the advice, and it failed."""
    from sqlalchemy import text

    engine = create_db_engine(fresh_db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    monkeypatch.setenv("BDX_DATABASE_URL", fresh_db_url)
    for args in (["db", "upgrade"], ["users", "list"]):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "[schema_too_new]" in err and "upgrade`" not in err, err
    code, out, _ = run_cli(["db", "current", "--json"], capsys)
    assert code == 0 and json.loads(out)["newer"] is True


def _upgrade_at(url: str, barrier: Any, results: Any) -> None:
    """Child process: open ``url``, wait for the other child, upgrade; report its outcome."""
    from matcher.errors import BdxError
    from node.db.engine import reachable

    engine = create_db_engine(url)
    barrier.wait()
    try:
        with reachable(engine):
            upgrade(engine)
        results.put("ok")
    except BdxError as exc:
        results.put(exc.reason)
    finally:
        engine.dispose()


def test_two_upgrades_at_once_take_turns(fresh_db_url: str) -> None:
    """Two upgrades of an empty database at the same moment both end well, and the schema is
    the models'. On SQLite two racing batch migrations left a stray _alembic_tmp_ table; and
    the second one's first connection, made before it took its turn, switched the new file to
    WAL while the first migrated: "database is locked" at once, in 22 of 30 tries. SQLite tries
    six new files."""
    import multiprocessing

    urls = [fresh_db_url]
    if fresh_db_url.startswith("sqlite:///"):
        urls += [f"{fresh_db_url}.{k}" for k in range(5)]
    ctx = multiprocessing.get_context("spawn")
    for url in urls:
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_upgrade_at, args=(url, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok", "ok"], url
        engine = create_db_engine(url)
        try:
            assert schema_diff(engine) == []
            assert not [t for t in inspect(engine).get_table_names() if t.startswith("_alembic")]
        finally:
            engine.dispose()


def test_db_cli_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["db", "upgrade", "--config", str(tmp_path / "none.toml")], capsys)
    assert code == 2
    assert err.startswith("bdx: error: config file") and "[config_not_found]" in err


def test_exchange_log_runs_on_the_migrated_schema(engine: Engine) -> None:
    key = SigningKey("bdx.example/xa-log", ed25519.Ed25519PrivateKey.generate())
    log = TransparencyLog.open(engine, key)
    assert log.append_many([b"query-1", b"query-2", b"query-3"]) == [0, 1, 2]
    assert log.size() == 3
    assert log.entry(1).data == b"query-2"
    assert log.issue_checkpoint().checkpoint.size == 3


def test_unreachable_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BDX_DATABASE_URL", "postgresql+psycopg://bdx:secret@127.0.0.1:1/none")
    for args in (["db", "current"], ["db", "upgrade"], ["users", "list"]):
        code, _, err = run_cli(args, capsys)
        assert code == 7 and err.count("\n") == 1  # the node's storage (README)
        assert "[database_unavailable]" in err and "secret" not in err


def test_active_records_of_subjects_are_found_by_index(engine: Engine) -> None:
    """The look-up every peer hit runs (``node.exchange.search``) reads the (subject_id, state)
    index rather than walking every active record by the (state, modality) one."""
    if engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics")
    sql = str(
        _ACTIVE_RESTRICTIONS.params(ids=[1, 2, 3]).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_template_records_subject_id_state (subject_id=? AND state=?)" in plan


#: Tables whose rows and indexes migration 0006 must keep (it rebuilds ``subjects`` on SQLite).
KEPT = ("subjects", "encounters", "template_records", "exchange_hits")


def _tables(conn: Connection, only: tuple[str, ...] = KEPT) -> dict[str, Table]:
    metadata = MetaData()
    metadata.reflect(conn, only=only)
    return {name: metadata.tables[name] for name in only}


def _snapshot(conn: Connection, only: tuple[str, ...] = KEPT) -> dict[str, object]:
    """Every row, index, unique constraint, foreign key and primary key of ``only``."""
    tables = _tables(conn, only)
    insp = inspect(conn)
    snap: dict[str, object] = {}
    for name, t in tables.items():
        snap[name] = [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key))]
        snap[name + ".indexes"] = sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)
        )
        snap[name + ".unique"] = sorted(
            (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(name)
        )
        snap[name + ".fks"] = sorted(
            (
                f["name"],
                tuple(f["constrained_columns"]),
                f["referred_table"],
                tuple(f["referred_columns"]),
                f["options"].get("ondelete"),
            )
            for f in insp.get_foreign_keys(name)
        )
        snap[name + ".pk"] = insp.get_pk_constraint(name)["constrained_columns"]
    return snap


def _new_subject(conn: Connection, external_id: str) -> int:
    subjects = _tables(conn)["subjects"]
    row = {"external_id": external_id, "created_at": datetime.now(UTC)}
    return int(conn.execute(insert(subjects).values(row).returning(subjects.c.id)).scalar_one())


def test_0006_keeps_every_row_and_index_and_never_gives_an_erased_id_again(
    fresh_db_url: str,
) -> None:
    """A 0005 node whose largest subject ids (5, 6) were erased, 6 after a hit reference was
    issued for it: the upgrade keeps every row, index and foreign key, and the next subject
    is 7 (SQLite gave 5 before: ``max(id) + 1``)."""
    engine = create_db_engine(fresh_db_url)
    try:
        upgrade(engine, "0005")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            t = _tables(conn)
            ids = [_new_subject(conn, f"case-{i}") for i in range(1, 7)]
            assert ids == [1, 2, 3, 4, 5, 6]
            enc = conn.execute(
                insert(t["encounters"])
                .values(subject_id=2, external_id="visa-1", loaded_at=now)
                .returning(t["encounters"].c.id)
            ).scalar_one()
            record = {
                "modality": "face",
                "format": "f",
                "format_version": 1,
                "restrictions": {},
                "state": "active",
                "created_at": now,
                "updated_at": now,
            }
            for ref, subject, encounter in (("r2", 2, enc), ("r4", 4, None), ("r6", 6, None)):
                conn.execute(
                    insert(t["template_records"]).values(
                        reference=ref, subject_id=subject, encounter_id=encounter, **record
                    )
                )
            conn.execute(
                insert(t["exchange_hits"]).values(
                    reference="ref-of-s6",
                    query_id="q-1",
                    requester="ID",
                    record_ref="s6",
                    created_at=now,
                )
            )
            conn.execute(delete(t["subjects"]).where(t["subjects"].c.id.in_([5, 6])))
        with engine.connect() as conn:
            before = _snapshot(conn)
        assert [r[0] for r in before["subjects"]] == [1, 2, 3, 4]  # type: ignore[attr-defined]
        assert len(before["template_records"]) == 2  # type: ignore[arg-type]

        upgrade(engine, "0006")
        with engine.connect() as conn:
            assert _snapshot(conn) == before
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        with engine.begin() as conn:
            assert _new_subject(conn, "case-7") == 7
            subjects_t = _tables(conn)["subjects"]
            conn.execute(delete(subjects_t).where(subjects_t.c.id == 7))
        with engine.begin() as conn:
            assert _new_subject(conn, "case-8") == 8
            # The foreign keys still hold and cascade: enforcement is back on after the rebuild.
            t = _tables(conn)
            conn.execute(delete(t["subjects"]).where(t["subjects"].c.id == 2))
            assert conn.execute(select(t["encounters"].c.id)).all() == []
            refs = conn.execute(select(t["template_records"].c.reference)).scalars().all()
            assert refs == ["r4"]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            t = _tables(conn)
            conn.execute(
                insert(t["template_records"]).values(
                    reference="orphan", subject_id=99, encounter_id=None, **record
                )
            )

        command.downgrade(alembic_config(engine), "0005")
        with engine.connect() as conn:
            subjects = [r[0] for r in conn.execute(select(_tables(conn)["subjects"].c.id))]
        assert sorted(subjects) == [1, 3, 4, 8]
    finally:
        engine.dispose()


def _check_names(engine: Engine) -> set[tuple[str, str]]:
    """(table, name) of every CHECK constraint in the database."""
    insp = inspect(engine)
    return {
        (table, str(check["name"]))
        for table in insp.get_table_names()
        for check in insp.get_check_constraints(table)
    }


def _declared_check_names() -> set[tuple[str, str]]:
    """(table, name) of every CHECK constraint the models declare (naming convention applied)."""
    return {
        (table.name, str(constraint.name))
        for metadata in target_metadata()
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }


#: The enum CHECK constraints as 0001 named them (no naming convention) and as 0007 does.
CHECKS_0001 = {
    ("users", "role"),
    ("template_records", "modality"),
    ("template_records", "record_state"),
}
CHECKS_0007 = {
    ("users", "ck_users_role"),
    ("template_records", "ck_template_records_modality"),
    ("template_records", "ck_template_records_record_state"),
}
#: The CHECK constraint migration 0009 adds (the outcome of a hit's follow-up).
CHECKS_0009 = {("exchange_hits", "ck_exchange_hits_outcome")}


def test_migrated_check_constraints_have_the_models_names(engine: Engine) -> None:
    """The schema comparison above does not compare CHECK constraints: the migrations named
    the enums' ones role, modality and record_state, the models ck_users_role,
    ck_template_records_modality and ck_template_records_record_state."""
    declared = _declared_check_names()
    assert declared >= CHECKS_0007
    assert _check_names(engine) == declared


#: Tables migration 0007 rebuilds on SQLite, the tokens that cascade from ``users`` and the
#: subjects records belong to.
REBUILT = ("users", "api_tokens", "subjects", "template_records")


def test_0007_renames_the_enum_checks_and_keeps_rows_and_enforcement(fresh_db_url: str) -> None:
    """A 0006 database with a user, a token and a record: the upgrade gives the enum CHECK
    constraints the models' names and keeps every row, index and foreign key; the constraints
    still refuse a value outside their enum; the downgrade gives back 0001's names."""
    engine = create_db_engine(fresh_db_url)
    now = datetime.now(UTC)
    record = {
        "format": "f",
        "format_version": 1,
        "restrictions": {},
        "created_at": now,
        "updated_at": now,
    }
    try:
        upgrade(engine, "0006")
        with engine.begin() as conn:
            t = _tables(conn, REBUILT)
            user = {"name": "root", "role": "admin", "active": True, "created_at": now}
            conn.execute(insert(t["users"]).values(user))
            token = {"token_id": "0" * 16, "token_hash": "0" * 64, "created_at": now}
            conn.execute(insert(t["api_tokens"]).values(user_id=1, **token))
            subject = _new_subject(conn, "case-1")
            face = {"subject_id": subject, "modality": "face", "state": "active", **record}
            conn.execute(insert(t["template_records"]).values(reference="r1", **face))
        with engine.connect() as conn:
            before = _snapshot(conn, REBUILT)
        assert (
            _check_names(engine)
            == _declared_check_names() - CHECKS_0007 - CHECKS_0009 | CHECKS_0001
        )

        upgrade(engine, "0007")  # 0007's own effect: a later one may add columns (0010)
        with engine.connect() as conn:
            assert _snapshot(conn, REBUILT) == before
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert _check_names(engine) == _declared_check_names() - CHECKS_0009
        for table, row in (
            ("users", {**user, "name": "eve", "role": "superuser"}),
            ("template_records", {**face, "reference": "r2", "modality": "iris"}),
            ("template_records", {**face, "reference": "r3", "state": "lost"}),
        ):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(insert(_tables(conn, REBUILT)[table]).values(row))
        with engine.begin() as conn:  # the foreign keys still cascade
            t = _tables(conn, REBUILT)
            conn.execute(delete(t["users"]))
            assert conn.execute(select(t["api_tokens"])).all() == []

        command.downgrade(alembic_config(engine), "0006")
        assert (
            _check_names(engine)
            == _declared_check_names() - CHECKS_0007 - CHECKS_0009 | CHECKS_0001
        )
    finally:
        engine.dispose()
