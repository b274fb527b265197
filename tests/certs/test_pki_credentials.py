"""NodeCredentials: a node's PKI files loaded, self-checked, used for mTLS and messages."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from certs.pki import KeyFileError, PkiError, PkiInputError, params
from certs.pki.bootstrap import build_region, write_region
from certs.pki.ca import CertificateAuthority
from certs.pki.credentials import NodeCredentials, NodePaths
from certs.pki.keys import load_certificate, write_public
from certs.pki.revocation import crl_pem
from certs.pki.tls import peer_country
from tests.fifo_support import FIFO_WAIT_S, fifo_released_after

PW = b"node passphrase"


@pytest.fixture
def region_dir(tmp_path: Path) -> Path:
    write_region(build_region(["TH", "ID", "MY"]), tmp_path, passphrase=PW)
    return tmp_path


def test_two_nodes_exchange_a_signed_message(region_dir: Path) -> None:
    th = NodeCredentials(NodePaths.from_region(region_dir, "TH"), passphrase=PW)
    id_ = NodeCredentials(NodePaths.from_region(region_dir, "ID"), passphrase=PW)
    assert (th.country, id_.country) == ("TH", "ID")
    token = th.sign({"v": 1, "sender": "TH", "kind": "query"})
    message = id_.verify(token, expected_country="TH")
    assert message.sender == "TH" and message.payload["kind"] == "query"
    options = th.uvicorn_options()
    assert options["ssl_keyfile_password"] == PW.decode()
    assert options["ssl_cert_reqs"] == 2  # ssl.CERT_REQUIRED


def test_mutual_tls_with_encrypted_keys(region_dir: Path) -> None:
    th = NodeCredentials(NodePaths.from_region(region_dir, "TH"), passphrase=PW)
    id_ = NodeCredentials(NodePaths.from_region(region_dir, "ID"), passphrase=PW)
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        raw, _ = listener.accept()
        with th.server_context(crl_in_handshake=True).wrap_socket(raw, server_side=True) as conn:
            seen.append(peer_country(conn.getpeercert(binary_form=True), th.anchors))
            conn.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ctx = id_.client_context(crl_in_handshake=True)
    with (
        socket.create_connection(listener.getsockname()[:2], timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="node-th") as conn,
    ):
        assert conn.recv(2) == b"ok"
        assert peer_country(conn.getpeercert(binary_form=True), id_.anchors) == "TH"
    thread.join(timeout=10)
    listener.close()
    assert seen == ["ID"]


def test_load_refuses_a_wrong_passphrase_and_a_revoked_own_certificate(region_dir: Path) -> None:
    paths = NodePaths.from_region(region_dir, "MY")
    with pytest.raises(KeyFileError) as err:
        NodeCredentials(paths, passphrase=b"wrong")
    assert err.value.reason == "bad_passphrase"
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    ca.revoke(load_certificate(paths.signing_cert))
    write_public(region_dir / "crl.pem", crl_pem(ca.crl()))
    with pytest.raises(PkiError) as revoked:
        NodeCredentials(paths, passphrase=PW)
    assert revoked.value.reason == "revoked"


def test_reload_picks_up_new_files_and_keeps_the_old_on_refusal(region_dir: Path) -> None:
    th = NodeCredentials(NodePaths.from_region(region_dir, "TH"), passphrase=PW)
    assert th.reload() == (1, 1)  # unchanged files: no-op
    old_list = (region_dir / "trust-list.jws").read_bytes()
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    my = NodePaths.from_region(region_dir, "MY")
    id_ = NodePaths.from_region(region_dir, "ID")
    members = [
        ("ID", load_certificate(id_.tls_cert), load_certificate(id_.signing_cert)),
        ("MY", load_certificate(my.tls_cert), load_certificate(my.signing_cert)),
    ]
    # the CA republishes the same members (sequence 2) and revokes MY's signing certificate
    th_paths = NodePaths.from_region(region_dir, "TH")
    members.append(
        ("TH", load_certificate(th_paths.tls_cert), load_certificate(th_paths.signing_cert))
    )
    ca.revoke(load_certificate(my.signing_cert))
    write_public(region_dir / "trust-list.jws", ca.trust_list(members).encode())
    write_public(region_dir / "crl.pem", crl_pem(ca.crl()))
    assert th.reload() == (2, 2)
    with pytest.raises(PkiError) as err:
        th.anchors.validate(load_certificate(my.signing_cert), "signing")
    assert err.value.reason == "revoked"
    write_public(region_dir / "trust-list.jws", old_list)  # an attacker replays the old list
    with pytest.raises(PkiError) as rollback:
        th.reload()
    assert rollback.value.reason == "rollback"
    assert th.anchors.trust_list.sequence == 2


def test_a_restart_refuses_the_older_crl_and_trust_list(region_dir: Path, tmp_path: Path) -> None:
    """An older CRL put back on disk (a restored backup, a writable shared folder) would un-revoke
    a certificate at the next start; with the held file the restart refuses it."""
    held = tmp_path / "state" / "pki-held.json"
    paths = NodePaths.from_region(region_dir, "ID")
    NodeCredentials(paths, passphrase=PW, held_file=held)
    assert held.stat().st_mode & 0o777 == 0o600
    old_crl = (region_dir / "crl.pem").read_bytes()
    old_list = (region_dir / "trust-list.jws").read_bytes()
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    th = NodePaths.from_region(region_dir, "TH")
    ca.revoke(load_certificate(th.tls_cert))
    write_public(region_dir / "crl.pem", crl_pem(ca.crl()))
    members = [
        (cc, load_certificate(p.tls_cert), load_certificate(p.signing_cert))
        for cc, p in ((c, NodePaths.from_region(region_dir, c)) for c in ("TH", "ID", "MY"))
    ]
    write_public(region_dir / "trust-list.jws", ca.trust_list(members).encode())
    running = NodeCredentials(paths, passphrase=PW, held_file=held)
    assert running.reload() == (2, 2)
    with pytest.raises(PkiError) as revoked:
        peer_country(th.tls_cert.read_bytes(), running.anchors)
    assert revoked.value.reason == "revoked"
    for name, old in (("crl.pem", old_crl), ("trust-list.jws", old_list)):
        newer = (region_dir / name).read_bytes()
        write_public(region_dir / name, old)
        with pytest.raises(PkiError) as restart:
            NodeCredentials(paths, passphrase=PW, held_file=held)
        assert restart.value.reason == "rollback", name
        write_public(region_dir / name, newer)
    # without the held file (as before) the old CRL would have been accepted
    write_public(region_dir / "crl.pem", old_crl)
    assert NodeCredentials(paths, passphrase=PW).anchors.crl.number == 1
    held.write_text("{not json")
    with pytest.raises(PkiError) as bad:
        NodeCredentials(paths, passphrase=PW, held_file=held)
    assert bad.value.reason == "malformed"


def test_a_new_trust_list_is_remembered_when_the_crl_is_refused(
    region_dir: Path, tmp_path: Path
) -> None:
    """reload() took a newer trust list, then refused the CRL: the held file records the new
    sequence all the same (it kept the old one until the next successful reload)."""
    import json

    held = tmp_path / "pki-held.json"
    paths = NodePaths.from_region(region_dir, "ID")
    node = NodeCredentials(paths, passphrase=PW, held_file=held)
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    members = [
        (cc, load_certificate(p.tls_cert), load_certificate(p.signing_cert))
        for cc, p in ((c, NodePaths.from_region(region_dir, c)) for c in ("TH", "ID", "MY"))
    ]
    write_public(region_dir / "trust-list.jws", ca.trust_list(members).encode())
    (region_dir / "crl.pem").write_bytes(b"not a CRL")
    with pytest.raises(PkiError):
        node.reload()
    assert json.loads(held.read_text())["trust_list_sequence"] == 2


def test_a_refused_trust_list_does_not_keep_a_new_crl_out(region_dir: Path, tmp_path: Path) -> None:
    """The trust-list file is damaged (or rolled back) when a revocation is published: the
    CRL is applied all the same, and the trust list's refusal is still raised (the CRL was
    never read, so a revoked key stayed trusted for as long as the list stayed bad)."""
    import json

    held = tmp_path / "pki-held.json"
    paths = NodePaths.from_region(region_dir, "ID")
    node = NodeCredentials(paths, passphrase=PW, held_file=held)
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    my = NodePaths.from_region(region_dir, "MY")
    ca.revoke(load_certificate(my.signing_cert))
    write_public(region_dir / "crl.pem", crl_pem(ca.crl()))
    (region_dir / "trust-list.jws").write_bytes(b"truncated")
    with pytest.raises(PkiError):
        node.reload()
    assert node.anchors.crl.number == 2 and node.anchors.trust_list.sequence == 1
    with pytest.raises(PkiError) as err:
        node.anchors.validate(load_certificate(my.signing_cert), "signing")
    assert err.value.reason == "revoked"
    assert json.loads(held.read_text())["crl_number"] == 2


def test_a_reader_enforces_the_held_file_without_writing_it(
    region_dir: Path, tmp_path: Path
) -> None:
    """``record=False`` (a CLI command, perhaps run as another OS user): no held file is
    created or changed, and an older document than the held one is still refused."""
    held = tmp_path / "pki-held.json"
    paths = NodePaths.from_region(region_dir, "ID")
    NodeCredentials(paths, passphrase=PW, held_file=held, record=False)
    assert not held.exists()
    NodeCredentials(paths, passphrase=PW, held_file=held)  # the node records sequence 1
    before = held.read_bytes()
    old_list = (region_dir / "trust-list.jws").read_bytes()
    ca = CertificateAuthority.open(region_dir / "ca", passphrase=PW)
    members = [
        (cc, load_certificate(p.tls_cert), load_certificate(p.signing_cert))
        for cc, p in ((c, NodePaths.from_region(region_dir, c)) for c in ("TH", "ID", "MY"))
    ]
    write_public(region_dir / "trust-list.jws", ca.trust_list(members).encode())
    reader = NodeCredentials(paths, passphrase=PW, held_file=held, record=False)
    assert reader.anchors.trust_list.sequence == 2 and held.read_bytes() == before
    NodeCredentials(paths, passphrase=PW, held_file=held)  # the node takes sequence 2
    write_public(region_dir / "trust-list.jws", old_list)
    with pytest.raises(PkiError) as rollback:
        NodeCredentials(paths, passphrase=PW, held_file=held, record=False)
    assert rollback.value.reason == "rollback"


@pytest.mark.parametrize(
    "name", ["trust-list.jws", "crl.pem", "nodes/th/tls.pem", "nodes/th/signing.key", "held"]
)
def test_a_fifo_in_place_of_a_pki_file_is_refused_at_once(region_dir: Path, name: str) -> None:
    """The node read its keys, certificates, trust list, CRL and held file whole at start: a
    FIFO there hung it forever (and /dev/zero ate its memory). It is refused at once, exit 3."""
    paths = NodePaths.from_region(region_dir, "TH")
    path = region_dir / name
    if path.exists():
        path.unlink()
    with fifo_released_after(path) as took, pytest.raises(PkiInputError) as err:
        NodeCredentials(paths, passphrase=PW, held_file=region_dir / "held")
    assert took[0] < FIFO_WAIT_S
    assert (err.value.reason, err.value.exit_code) == ("unreadable_file", 3)
    assert str(err.value) == f"cannot read {path}: not a regular file"


def test_a_trust_list_past_its_bound_is_read_no_further(region_dir: Path) -> None:
    paths = NodePaths.from_region(region_dir, "TH")
    paths.trust_list.write_bytes(b" " * (params.MAX_TRUST_LIST_FILE_BYTES + 1))
    with pytest.raises(PkiInputError) as err:
        NodeCredentials(paths, passphrase=PW)
    assert (err.value.reason, err.value.exit_code) == ("file_too_large", 3)
