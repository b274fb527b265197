"""Key files, the CA directory, trust-list loading/refresh, and canonical JSON."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from certs.pki import (
    CertificateAuthority,
    CrlRefused,
    KeyFileError,
    PkiError,
    PkiInputError,
    TrustAnchors,
    TrustListRefused,
    Usage,
    canonical_json,
    generate_key,
    load_private_key,
    write_private_key,
)
from certs.pki.bootstrap import build_region, make_node
from certs.pki.canonical import parse_canonical
from certs.pki.keys import load_certificate, load_csr
from certs.pki.trustlist import load_trust_list

NOW = dt.datetime.now(dt.UTC)


def test_private_key_file_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = write_private_key(tmp_path / "k.key", generate_key())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError) as err:
        write_private_key(path, generate_key())
    assert err.value.reason == "file_exists"
    assert load_private_key(path) is not None


def test_passphrase_protected_key(tmp_path: Path) -> None:
    key = generate_key()
    path = write_private_key(tmp_path / "k.key", key, b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    loaded = load_private_key(path, b"correct horse")
    assert loaded.public_key() == key.public_key()
    for passphrase, reason in [(None, "passphrase_required"), (b"wrong", "bad_passphrase")]:
        with pytest.raises(KeyFileError) as err:
            load_private_key(path, passphrase)
        assert err.value.reason == reason
    plain = write_private_key(tmp_path / "plain.key", key)
    with pytest.raises(KeyFileError) as err:
        load_private_key(plain, b"unexpected")
    assert err.value.reason == "bad_passphrase"
    with pytest.raises(PkiInputError) as garbage:  # not a key at all: bad input (exit 3)
        load_private_key(b"garbage")
    assert garbage.value.reason == "bad_key" and garbage.value.exit_code == 3
    with pytest.raises(PkiInputError) as missing:
        load_private_key(tmp_path / "absent.key")
    assert missing.value.reason == "unreadable_file"


def test_bad_certificate_and_csr_files() -> None:
    with pytest.raises(PkiError) as err:
        load_certificate(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert err.value.reason == "bad_certificate"
    with pytest.raises(PkiInputError) as csr:
        load_csr(b"\x30\x03\x02\x01\x00")
    assert csr.value.reason == "bad_csr"


def test_ca_directory_round_trip_with_passphrase(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("TH", directory=tmp_path / "ca", passphrase=b"pw")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    with pytest.raises(KeyFileError) as err:
        CertificateAuthority.open(tmp_path / "ca", passphrase=b"nope")
    assert err.value.reason == "bad_passphrase"
    with pytest.raises(KeyFileError):
        CertificateAuthority.create("TH", directory=tmp_path / "ca")  # never overwrites a CA key
    node = make_node(ca, "ID")
    ca.revoke(node.tls_cert)
    ca.crl()
    reopened = CertificateAuthority.open(tmp_path / "ca", passphrase=b"pw")
    assert reopened.cert == ca.cert
    assert reopened.state["crl_number"] == 1
    assert f"{node.tls_cert.serial_number:x}" in reopened.state["revoked"]
    assert len(reopened.state["issued"]) == 2
    with pytest.raises(PkiInputError) as not_ca:
        CertificateAuthority.open(tmp_path)
    assert not_ca.value.reason == "not_a_ca"


def test_trust_list_refresh_rollback_and_staleness() -> None:
    region = build_region(["TH", "ID"])
    anchors = region.anchors()
    members = [(n.country, n.tls_cert, n.signing_cert) for n in region.nodes.values()]
    sg = make_node(region.ca, "SG")
    second = region.ca.trust_list([*members, (sg.country, sg.tls_cert, sg.signing_cert)])
    assert anchors.refresh_trust_list(second.encode()).sequence == 2
    assert anchors.validate(sg.tls_cert, Usage.TLS).country == "SG"
    anchors.refresh_trust_list(second.encode())  # the same list again is fine
    for token in (region.trust_list, _resign_same_sequence(region, members)):
        with pytest.raises(TrustListRefused) as err:
            anchors.refresh_trust_list(token.encode())
        assert err.value.reason == "rollback"
    assert anchors.trust_list.sequence == 2  # the held list survived the refused refreshes
    stale = region.ca.trust_list(members, now=NOW - dt.timedelta(days=10))
    with pytest.raises(TrustListRefused) as err:
        anchors.refresh_trust_list(stale.encode())
    assert err.value.reason == "stale_trust_list"
    # grace is configurable: 9 days after issue, a 7-day list is stale with 1 day of grace ...
    later = NOW + dt.timedelta(days=9)
    with pytest.raises(TrustListRefused) as err:
        anchors.validate(sg.tls_cert, Usage.TLS, now=later)
    assert err.value.reason == "stale_trust_list"
    # ... and accepted with 3
    loaded = load_trust_list(second, region.ca.cert, now=later, grace=dt.timedelta(days=3))
    assert loaded.sequence == 2


def test_restart_refuses_files_older_than_the_persisted_state() -> None:
    region = build_region(["TH"])
    root = region.ca.cert.public_bytes(serialization.Encoding.PEM)
    tl, crl = region.trust_list.encode(), region.crl
    anchors = TrustAnchors.load(root, tl, crl, min_trust_list_sequence=1, min_crl_number=1)
    assert (anchors.trust_list.sequence, anchors.crl.number) == (1, 1)
    with pytest.raises(TrustListRefused) as err:
        TrustAnchors.load(root, tl, crl, min_trust_list_sequence=2)
    assert err.value.reason == "rollback"
    with pytest.raises(CrlRefused) as crl_err:
        TrustAnchors.load(root, tl, crl, min_crl_number=2)
    assert crl_err.value.reason == "rollback"


def _resign_same_sequence(region: Any, members: list[Any]) -> str:
    region.ca.state["trust_list_sequence"] = 1  # a CA that re-uses sequence 2 for other content
    token: str = region.ca.trust_list(members[:1])
    return token


def test_trust_list_signature_checks() -> None:
    region = build_region(["TH"])
    other = build_region(["TH"])
    with pytest.raises(TrustListRefused) as err:
        load_trust_list(other.trust_list, region.ca.cert, now=NOW)
    assert err.value.reason == "unknown_ca"
    header, payload, signature = region.trust_list.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["sequence"] = 99
    forged = base64.urlsafe_b64encode(canonical_json(body)).rstrip(b"=").decode()
    with pytest.raises(TrustListRefused) as err:
        load_trust_list(f"{header}.{forged}.{signature}", region.ca.cert, now=NOW)
    assert err.value.reason == "bad_signature"
    for junk in ("", "a.b.c", "not a token"):
        with pytest.raises(TrustListRefused) as err:
            load_trust_list(junk, region.ca.cert, now=NOW)
        assert err.value.reason == "malformed"


def test_canonical_json_is_stable_and_strict() -> None:
    a = {"v": 1, "b": [1, 2, {"y": None, "x": True}], "a": "ünïcode"}
    b = {"a": "ünïcode", "b": [1, 2, {"x": True, "y": None}], "v": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":"ünïcode","b":[1,2,{"x":true,"y":null}],"v":1}'.encode()
    bad_values = (
        {"x": 1.5},
        {"x": 2**53},
        {1: "a"},
        {"x": {1, 2}},
        {"x": float("nan")},
        {"x": "\ud800"},
    )
    for bad in bad_values:
        with pytest.raises(PkiInputError) as err:
            canonical_json(bad)
        assert err.value.reason == "malformed"
    assert parse_canonical(canonical_json(a)) == a
    for text in (
        b'{"b":1,"a":2}',
        b'{"a": 1}',
        b'{"a":1,"a":2}',
        b'{"a":1.0}',
        b"\xff",
        b"{",
        b'{"a":"\\ud800"}',
    ):
        with pytest.raises(PkiInputError):
            parse_canonical(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips(value: Any) -> None:
    data = canonical_json(value)
    assert parse_canonical(data) == value
    assert canonical_json(json.loads(data)) == data


def test_describe_refuses_deeply_nested_json() -> None:
    """`bdx pki show` of a token whose JSON nests past the parser's stack: malformed, not a
    RecursionError traceback."""
    from certs.pki.describe import describe

    deep = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).rstrip(b"=")
    with pytest.raises(PkiInputError) as exc:
        describe(deep + b".e30.AAAA")
    assert exc.value.reason == "malformed"
