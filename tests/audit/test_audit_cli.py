"""``bdx audit`` end to end: tampering with the stored log or an export is detected."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_support import BACKENDS, LOG_NAME, Bdx, Node
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import text

from certs.translog import SigningKey, SplitViewError, TransparencyLog, Witness
from node.db.engine import create_db_engine
from node.db.migrate import upgrade

TAMPER = 5


def test_help_everywhere(bdx: Bdx) -> None:
    for cmd in ([], ["list"], ["export"], ["verify"], ["store"], ["checkpoint"]):
        code, out, _ = bdx("audit", *cmd, "--help", key=False)
        assert code == 0 and "Usage" in out


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
def test_clean_log_exports_and_verifies(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    code, _, err = bdx("audit", "export", "--format", "json", "--out", str(out))
    assert code == 0, err
    code, stdout, err = bdx("audit", "verify", str(out), "--log-key", node.vkey, key=False)
    assert code == 0, err
    assert "12 entries" in stdout and "1 checkpoints" in stdout and "proofs checked" in stdout
    code, stdout, _ = bdx("audit", "verify", str(out), "--log-key", node.vkey, "--json", key=False)
    assert json.loads(stdout)["entries_verified"] == 12
    other = SigningKey("other.example/log", ed25519.Ed25519PrivateKey.generate())
    code, _, err = bdx(
        "audit", "verify", str(out), "--log-key", other.verifying_key().to_vkey(), key=False
    )
    assert code == 5 and "[origin_mismatch]" in err  # the wrong key: verification fails
    code, stdout, _ = bdx("audit", "store", "--json")
    assert code == 0 and json.loads(stdout)["entries_checked"] == 13  # + the export action


def test_list_and_csv_export(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    code, stdout, _ = bdx("audit", "list", "--peer", "ID", "--json")
    assert code == 0
    doc = json.loads(stdout)
    assert doc["total"] == 4 and {i["event"]["peer"] for i in doc["items"]} == {"ID"}
    code, stdout, _ = bdx("audit", "list", "--type", "query_refused", "--outcome", "hit")
    assert code == 0 and stdout.strip().endswith("0 of 0 matching entries")
    node.log.append(
        b'{"type":"policy_decision","direction":"outbound","peer":"MY","allowed":false,'
        b'"refusal":"purpose_not_allowed","case_ref":"TH-2026/7"}'
    )
    code, stdout, _ = bdx("audit", "list", "--type", "policy_decision")
    assert "allowed=False refusal=purpose_not_allowed" in stdout and "case_ref=TH-2026/7" in stdout
    out = tmp_path / "e.csv"
    out.write_text("an older export, world-readable")
    out.chmod(0o644)
    code, _, _ = bdx("audit", "export", "--format", "csv", "--out", str(out))
    assert code == 0 and out.read_text().startswith("index,created_at,leaf_hash,data")


def test_an_export_is_readable_by_its_user_only(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    """It holds what the database holds (enrolled subject ids, case references, officers);
    under the usual umask it was 0644, readable by every local user. An export replacing an
    older file takes the new mode too, and nothing is left half-written beside it."""
    old_mask = os.umask(0o022)
    try:
        for fmt in ("json", "csv"):
            out = tmp_path / f"e.{fmt}"
            out.write_text("an older export")
            out.chmod(0o644)
            code, _, err = bdx("audit", "export", "--format", fmt, "--out", str(out))
            assert code == 0, err
            assert stat.S_IMODE(out.stat().st_mode) == 0o600 and "older" not in out.read_text()
    finally:
        os.umask(old_mask)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("e.")) == [
        "e.csv",
        "e.json",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_export_says_what_the_latest_checkpoint_leaves_out(
    bdx: Bdx, node: Node, tmp_path: Path
) -> None:
    out = tmp_path / "export.json"
    code, _, err = bdx("audit", "export", "--format", "json", "--out", str(out))
    assert code == 0 and "warning" not in err  # every entry is covered
    node.log.append(b'{"type":"query_sent","peer":"TH"}')
    code, _, err = bdx("audit", "export", "--format", "json", "--out", str(out))
    assert code == 0  # the warning has the prefix of every warning (it was "note: ...")
    assert "bdx: warning: 2 entries after the latest checkpoint (size 12)" in err  # + export


def test_checkpoint_then_consistency(bdx: Bdx, node: Node) -> None:
    node.log.append(b'{"type":"query_sent","peer":"TH"}')
    code, stdout, _ = bdx("audit", "checkpoint", "--json")
    assert code == 0 and json.loads(stdout)["size"] == 13
    assert node.log.latest_checkpoint().checkpoint.size == 13  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["audit", "list", "--peer", "thailand"], 2, "[bad_filter]"),
        (["audit", "list", "--since", "yesterday"], 2, "[bad_filter]"),
        (["audit", "export", "--format", "xml", "--out", "x"], 2, "[bad_filter]"),
        (["audit", "verify", "/nonexistent.json", "--log-key", "x"], 4, "[key_not_found]"),
    ],
)
def test_bad_input_is_one_line_error(bdx: Bdx, args: list[str], code: int, needle: str) -> None:
    got, _, err = bdx(*args, key=args[1] != "verify")
    assert got == code and needle in err and len(err.strip().splitlines()) == 1


def test_verify_without_a_log_key_off_the_node_asks_for_one(
    bdx: Bdx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auditor without the node's settings who forgot --log-key got `pki_dir is not set`
    [no_pki], and a ./var folder with a new database in the folder they stood in."""
    export = tmp_path / "export.json"
    assert bdx("audit", "export", "--format", "json", "--out", str(export))[0] == 0
    for name in ("BDX_DATABASE_URL", "BDX_DATA_DIR", "BDX_COUNTRY"):
        monkeypatch.delenv(name)
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    monkeypatch.chdir(auditor)
    code, out, err = bdx("audit", "verify", str(export), key=False)
    assert (code, out) == (2, "") and "[no_log_key]" in err and "--log-key" in err, err
    assert len(err.splitlines()) == 1 and list(auditor.iterdir()) == []


def test_a_list_limit_out_of_range_is_a_usage_error(bdx: Bdx) -> None:
    """`--limit 0` was refused as a filter without naming the option, and the help did not
    say how large a page may be."""
    for limit in ("0", "1001"):
        code, _, err = bdx("audit", "list", "--limit", limit)
        assert code == 2 and "Invalid value for '--limit'" in err, err
    assert bdx("audit", "list", "--limit", "1000")[0] == 0


def test_a_binary_key_file_is_a_one_line_error(bdx: Bdx, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    assert bdx("audit", "export", "--format", "json", "--out", str(out))[0] == 0
    binary = tmp_path / "bin.key"
    binary.write_bytes(bytes(range(256)))
    for option in ("--log-key", "--witness-key"):
        args = ["audit", "verify", str(out), option, str(binary)]
        if option == "--witness-key":
            args += ["--log-key", str(binary)]
        code, _, err = bdx(*args, key=False)
        assert code == 3 and "[bad_key]" in err and len(err.strip().splitlines()) == 1


def test_file_problems_are_one_line_errors(bdx: Bdx, tmp_path: Path, node: Node) -> None:
    """Unwritable outputs, unreadable inputs and odd key material: exit codes, no tracebacks."""
    out = tmp_path / "new-folder" / "export.json"  # a missing folder is made
    assert bdx("audit", "export", "--out", str(out))[0] == 0
    for fmt in ("json", "csv"):
        code, _, err = bdx("audit", "export", "--format", fmt, "--out", str(out / "x"))
        assert code == 2 and len(err.strip().splitlines()) <= 4 and "Traceback" not in err
    verify = ["audit", "verify"]
    vkey = node.log.verifying_key.to_vkey()
    code, _, err = bdx(*verify, str(tmp_path), "--log-key", vkey, key=False)
    assert code == 2 and "is a directory" in err  # the option's own usage check
    for path, want in ((out / "x", 3), (tmp_path / "none.json", 4)):
        code, _, err = bdx(*verify, str(path), "--log-key", vkey, key=False)
        assert code == want and len(err.strip().splitlines()) == 1, err
    store = ["audit", "store", "--signing-key", str(out / "key.pem"), "--origin", "o"]
    code, _, err = bdx(*store, key=False)
    assert code == 3 and "[unreadable_file]" in err
    unknown_oid = "log+576ae295+AjAMMAUGAyoDBAMDAAEC"  # an ECDSA vkey of an unknown key type
    code, _, err = bdx(*verify, str(out), "--log-key", unknown_oid, key=False)
    assert code not in (0, 1) and "[bad_vkey]" in err and len(err.strip().splitlines()) == 1


def test_an_export_over_the_size_bound_is_refused_unread(
    bdx: Bdx, tmp_path: Path, node: Node
) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20))
    vkey = node.log.verifying_key.to_vkey()
    code, _, err = bdx("audit", "verify", str(big), "--max-mib", "1", "--log-key", vkey, key=False)
    assert code == 3 and "[file_too_large]" in err


def test_missing_log_key_options(bdx: Bdx, tmp_path: Path, node: Node) -> None:
    code, _, err = bdx("audit", "store", key=False)
    assert code == 2 and "[no_pki]" in err  # no --signing-key: the node's PKI key is needed
    code, _, err = bdx("audit", "store", "--signing-key", str(node.key_file), key=False)
    assert code == 2 and "[missing_origin]" in err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    code, _, err = bdx("audit", "store", "--signing-key", str(bad), "--origin", LOG_NAME, key=False)
    assert code == 2 and "[bad_key]" in err


Tamper = Callable[[Node], None]


def _edit(node: Node) -> None:
    with node.engine.begin() as conn:
        conn.execute(
            text("UPDATE translog_entries SET data = :d WHERE leaf_index = :i"),
            {"d": b'{"type":"reply_sent","outcome":"no_hit"}', "i": TAMPER},
        )


def _edit_with_hash(node: Node) -> None:
    """An attacker who also rewrites the stored leaf hash."""
    from certs.merkle import hash_leaf

    data = b'{"type":"reply_sent","outcome":"no_hit"}'
    with node.engine.begin() as conn:
        conn.execute(
            text("UPDATE translog_entries SET data = :d, leaf_hash = :h WHERE leaf_index = :i"),
            {"d": data, "h": hash_leaf(data), "i": TAMPER},
        )


def _delete(node: Node) -> None:
    with node.engine.begin() as conn:
        conn.execute(text("DELETE FROM translog_entries WHERE leaf_index = :i"), {"i": TAMPER})


def _reorder(node: Node) -> None:
    with node.engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT leaf_index, leaf_hash, data FROM translog_entries "
                "WHERE leaf_index IN (:a, :b)"
            ),
            {"a": TAMPER, "b": TAMPER + 1},
        ).all()
        for (index, _, _), (_, h, d) in zip(rows, reversed(rows), strict=True):
            conn.execute(
                text("UPDATE translog_entries SET leaf_hash = :h, data = :d WHERE leaf_index = :i"),
                {"h": h, "d": d, "i": index},
            )


@pytest.mark.parametrize("node", BACKENDS, indirect=True)
@pytest.mark.parametrize(
    ("tamper", "store_reason", "export_reason"),
    [
        (_edit, "entry_modified", "entry_modified"),
        (_edit_with_hash, "tree_mismatch", "inclusion_failed"),
        (_delete, "entry_missing", "entry_missing"),
        (_reorder, "tree_mismatch", "inclusion_failed"),
    ],
)
def test_tampering_with_the_store_is_detected(
    bdx: Bdx, node: Node, tmp_path: Path, tamper: Tamper, store_reason: str, export_reason: str
) -> None:
    before = tmp_path / "before.json"
    assert bdx("audit", "export", "--out", str(before))[0] == 0
    tamper(node)
    code, _, err = bdx("audit", "store")
    assert code == 5 and f"[{store_reason}]" in err, err
    assert "entry" in err or "leaves" in err
    after = tmp_path / "after.json"
    code, _, err = bdx("audit", "export", "--out", str(after))
    if code == 0:  # the export is written; verifying it finds the fault
        code, _, err = bdx("audit", "verify", str(after), "--log-key", node.vkey, key=False)
    assert code == 5 and f"[{export_reason}]" in err, err
    # The export taken before still verifies: it is evidence of what the log said.
    assert bdx("audit", "verify", str(before), "--log-key", node.vkey, key=False)[0] == 0


def _export_doc(bdx: Bdx, path: Path) -> dict[str, object]:
    assert bdx("audit", "export", "--out", str(path))[0] == 0
    doc: dict[str, object] = json.loads(path.read_bytes())
    return doc


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ("data", "entry_modified"),
        ("drop", "entry_missing"),
        ("swap", "entry_reordered"),
        ("root", "bad_signature"),
    ],
)
def test_editing_the_export_file_is_detected(
    bdx: Bdx, node: Node, tmp_path: Path, edit: str, reason: str
) -> None:
    path = tmp_path / "export.json"
    doc = _export_doc(bdx, path)
    entries = doc["entries"]
    assert isinstance(entries, list)
    if edit == "data":
        event = json.loads(base64.b64decode(entries[3]["data"]))
        event["outcome"] = "no_hit"
        entries[3]["data"] = base64.b64encode(json.dumps(event).encode()).decode()
    elif edit == "drop":
        del entries[3]
    elif edit == "swap":
        entries[3], entries[4] = entries[4], entries[3]
    else:
        notes = doc["checkpoints"]
        assert isinstance(notes, list)
        lines = notes[-1].split("\n")
        lines[2] = base64.b64encode(bytes(32)).decode()
        notes[-1] = "\n".join(lines)
    path.write_text(json.dumps(doc))
    code, _, err = bdx("audit", "verify", str(path), "--log-key", node.vkey, key=False)
    assert code == 5 and f"[{reason}]" in err, err


def test_wrong_log_key_or_missing_witness_fails(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    _export_doc(bdx, path)
    other = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()).verifying_key().to_vkey()
    code, _, err = bdx("audit", "verify", str(path), "--log-key", other, key=False)
    assert code == 5 and "[unsigned]" in err
    key_file = tmp_path / "log.vkey"
    key_file.write_text(node.vkey + "\n")
    args = ["audit", "verify", str(path), "--log-key", str(key_file), "--min-cosignatures", "1"]
    code, _, err = bdx(*args, key=False)
    assert code == 5 and "[too_few_cosignatures]" in err


def test_witness_cosignatures_are_counted(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    wkey = SigningKey("witness.th.example/w", ed25519.Ed25519PrivateKey.generate())
    witness = Witness(node.engine, wkey)
    latest = node.log.latest_checkpoint()
    assert latest is not None
    cosig = witness.cosign(latest.to_bytes(), node.log.verifying_key)
    node.log.add_cosignature(latest.checkpoint, cosig, wkey.verifying_key())
    path = tmp_path / "export.json"
    _export_doc(bdx, path)
    wvkey = wkey.verifying_key().to_vkey()
    args = ["--log-key", node.vkey, "--witness-key", wvkey, "--min-cosignatures", "1", "--json"]
    code, stdout, err = bdx("audit", "verify", str(path), *args, key=False)
    assert code == 0, err
    assert json.loads(stdout)["cosigners"] == {"12": ["witness.th.example/w"]}


def test_split_view_to_two_peers_is_detected(node: Node, tmp_path: Path) -> None:
    """The node keeps a second copy of its log that agrees on the first 12 entries, then
    shows peer TH one history and peer ID another; the peers' witnesses each cosign what
    they see, and comparing their cosigned checkpoints exposes the fork."""
    fork_engine = create_db_engine(f"sqlite:///{tmp_path / 'fork.sqlite3'}")
    upgrade(fork_engine)
    fork = TransparencyLog.open(fork_engine, node.key)
    fork.append_many([e.data for e in node.log.entries(0, 12)])
    fork.issue_checkpoint()
    witnesses = []
    for name in ("th", "id"):
        eng = create_db_engine(f"sqlite:///{tmp_path / f'witness-{name}.sqlite3'}")
        upgrade(eng)
        w = Witness(
            eng, SigningKey(f"witness.{name}.example/w", ed25519.Ed25519PrivateKey.generate())
        )
        witnesses.append(w)
    w_th, w_id = witnesses
    w_th.cosign(node.log.latest_checkpoint().to_bytes(), node.log.verifying_key)  # type: ignore[union-attr]
    w_id.cosign(fork.latest_checkpoint().to_bytes(), node.log.verifying_key)  # type: ignore[union-attr]
    node.log.append(b'{"type":"reply_sent","peer":"TH","outcome":"hit"}')
    fork.append(b'{"type":"reply_sent","peer":"TH","outcome":"no_hit"}')
    seen_by_th, seen_by_id = node.log.issue_checkpoint(), fork.issue_checkpoint()
    w_th.cosign(seen_by_th.to_bytes(), node.log.verifying_key, node.log.consistency_proof(12, 13))
    w_id.cosign(seen_by_id.to_bytes(), node.log.verifying_key, fork.consistency_proof(12, 13))
    with pytest.raises(SplitViewError) as exc:
        w_th.check_peer_view(w_id.latest(LOG_NAME).to_bytes(), node.log.verifying_key)  # type: ignore[union-attr]
    assert exc.value.evidence == (seen_by_th.to_bytes(), seen_by_id.to_bytes())
    # An honest view passes the same comparison.
    w_th.check_peer_view(seen_by_th.to_bytes(), node.log.verifying_key)
    for eng in (fork_engine, *(w._engine for w in witnesses)):
        eng.dispose()


def test_verify_uses_the_node_log_key_by_default(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    _export_doc(bdx, path)
    code, stdout, err = bdx("audit", "verify", str(path))  # key from --signing-key/--origin
    assert code == 0 and stdout.startswith(f"OK {LOG_NAME}: 12 entries"), err
    code, _, err = bdx("audit", "verify", str(tmp_path / "none.json"), "--log-key", node.vkey)
    assert code == 4 and "no export file" in err
    code, _, err = bdx("audit", "verify", str(path), "--log-key", "not a vkey", key=False)
    assert code == 4 and len(err.strip().splitlines()) == 1  # no such file, nor vkey text


def test_a_mistyped_key_file_is_4_and_malformed_key_text_3(
    bdx: Bdx, node: Node, tmp_path: Path
) -> None:
    """A mistyped --log-key file name was read as vkey text: exit 5, the code of a log that
    failed verification. 5 stays that; a key that is not there is 4, a malformed one 3."""
    path = tmp_path / "export.json"
    _export_doc(bdx, path)
    key_file = tmp_path / "th.vkey"
    key_file.write_text(node.vkey + "\n")
    wkey = SigningKey("witness.th.example/w", ed25519.Ed25519PrivateKey.generate())
    witness = wkey.verifying_key().to_vkey("cosignature")
    assert bdx("audit", "verify", str(path), "--log-key", str(key_file), key=False)[0] == 0
    for option in ("--log-key", "--witness-key"):
        base = ["audit", "verify", str(path), "--log-key", node.vkey]
        for name in ("th.vkeyy", str(tmp_path / "absent"), "absent.vkey"):
            code, _, err = bdx(*base, option, name, key=False)
            assert code == 4 and "[key_not_found]" in err and name in err, (option, name, err)
            assert len(err.strip().splitlines()) == 1
        truncated = (node.vkey if option == "--log-key" else witness)[:-8]
        code, _, err = bdx(*base, option, truncated, key=False)
        assert code == 3 and "[bad_vkey]" in err and len(err.strip().splitlines()) == 1, err
        code, _, err = bdx(*base, option, str(tmp_path), key=False)
        assert code == 3 and "[unreadable_file]" in err, err
    other = SigningKey(LOG_NAME, ed25519.Ed25519PrivateKey.generate()).verifying_key().to_vkey()
    code, _, err = bdx("audit", "verify", str(path), "--log-key", other, key=False)
    assert code == 5, err  # a well-formed key that did not sign the log


def test_out_of_range_options_are_usage_errors(bdx: Bdx, node: Node, tmp_path: Path) -> None:
    """--outcome maybe listed nothing, silently (no event has it), and --min-cosignatures -1
    was taken (it asks for nothing, as 0 does)."""
    code, out, err = bdx("audit", "list", "--outcome", "maybe")
    assert code == 2 and "--outcome" in err and out == "", err
    code, _, err = bdx("audit", "list", "--outcome", "no_hit", "--json")
    assert code == 0, err
    path = tmp_path / "export.json"
    _export_doc(bdx, path)
    args = ["audit", "verify", str(path), "--log-key", node.vkey, "--min-cosignatures", "-1"]
    code, _, err = bdx(*args, key=False)
    assert code == 2 and "--min-cosignatures" in err, err
