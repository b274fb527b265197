"""Signed messages (compact JWS, ES256, x5c): round trip and every refusal reason."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from certs import jws
from certs.pki import PkiError, TrustAnchors, Usage, canonical_json, generate_key
from certs.pki.bootstrap import Region, build_region, make_node
from certs.pki.jose import sign_compact, thumbprint
from certs.pki.keys import certificate_pem
from certs.pki.revocation import crl_pem

NOW = dt.datetime.now(dt.UTC)
QUERY: dict[str, Any] = {
    "v": 1,
    "sender": "TH",
    "kind": "fingerprint_query",
    "query_id": "4f1c2b9e-0c1a-4c55-9a53-2b8f7f0f9f11",
    "template": "AAECAwQFBgcICQ==",
    "threshold_ppm": 350000,
}


@pytest.fixture(scope="module")
def region() -> Region:
    return build_region(["TH", "ID", "MY"])


def refused(reason: str) -> Any:
    class _Check:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
            assert isinstance(exc, PkiError), f"expected a refusal with reason {reason!r}"
            assert exc.reason == reason, f"{exc!r} has reason {exc.reason}, not {reason}"
            return True

    return _Check()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_th(region: Region, payload: dict[str, Any] = QUERY) -> str:
    th = region.nodes["TH"]
    return jws.sign(payload, th.signing_key, [th.signing_cert])


def test_round_trip(region: Region) -> None:
    token = sign_th(region)
    msg = jws.verify(token, region.anchors(), expected_country="TH")
    assert msg.payload == QUERY and msg.sender == "TH"
    assert msg.payload_bytes == canonical_json(QUERY)
    assert msg.signer.usage is Usage.SIGNING and msg.signer.node_name == "bdx-th"
    header = msg.header
    assert header["alg"] == "ES256" and header["typ"] == "bdx-msg+jws"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert leaf == region.nodes["TH"].signing_cert
    assert header["kid"] == header["x5t#S256"] == thumbprint(leaf)
    # the same payload in any key order gives the same signed bytes
    reordered = dict(reversed(list(QUERY.items())))
    assert jws.verify(sign_th(region, reordered), region.anchors()).payload_bytes == (
        msg.payload_bytes
    )
    custom = jws.sign(
        QUERY,
        region.nodes["TH"].signing_key,
        [region.nodes["TH"].signing_cert],
        typ="bdx-query+jws",
    )
    with refused("wrong_type"):
        jws.verify(custom, region.anchors())
    assert jws.verify(custom, region.anchors(), typ="bdx-query+jws").sender == "TH"


def _with_header(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    fields = json.loads(unb64url(header))
    fields.update(changes)
    compact = json.dumps(fields, separators=(",", ":"))  # as signed: only the change differs
    return ".".join([b64url(compact.encode()), payload, signature])


def test_unsigned_and_symmetric_algorithms_are_refused(region: Region) -> None:
    token = sign_th(region)
    none = _with_header(token, alg="none").rsplit(".", 1)[0] + "."
    with refused("weak_algorithm"):
        jws.verify(none, region.anchors())
    for alg in ("HS256", "RS256", "EdDSA", "NONE"):
        with refused("weak_algorithm"):
            jws.verify(_with_header(token, alg=alg), region.anchors())


def test_tampered_payload_and_header_are_refused(region: Region) -> None:
    token = sign_th(region)
    header, payload, signature = token.split(".")
    forged = b64url(canonical_json({**QUERY, "threshold_ppm": 1}))
    with refused("bad_signature"):
        jws.verify(f"{header}.{forged}.{signature}", region.anchors())
    with refused("malformed"):  # kid must repeat x5t#S256
        jws.verify(_with_header(token, kid="someone-else"), region.anchors())
    with refused("bad_signature"):
        jws.verify(_with_header(token, kid="AAAA", **{"x5t#S256": "AAAA"}), region.anchors())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with refused("bad_signature"):
        jws.verify(f"{header}.{payload}.{flipped}", region.anchors())


def test_wrong_key_is_refused(region: Region) -> None:
    th = region.nodes["TH"]
    token = jws.sign(QUERY, generate_key(), [th.signing_cert])
    with refused("bad_signature"):
        jws.verify(token, region.anchors())


def test_certificate_from_another_ca_is_refused(region: Region) -> None:
    other = build_region(["TH"]).nodes["TH"]
    with refused("unknown_ca"):
        jws.verify(jws.sign(QUERY, other.signing_key, [other.signing_cert]), region.anchors())


def test_revoked_signer_is_refused() -> None:
    fresh = build_region(["TH", "ID"])
    anchors = fresh.anchors()
    token = sign_th(fresh)
    jws.verify(token, anchors)  # valid and cached
    fresh.ca.revoke(fresh.nodes["TH"].signing_cert)
    anchors.refresh_crl(crl_pem(fresh.ca.crl()))
    with refused("revoked"):
        jws.verify(token, anchors)


def test_expired_signer_is_refused(region: Region) -> None:
    old = make_node(
        region.ca, "TH", not_before=NOW - dt.timedelta(days=100), validity=dt.timedelta(days=10)
    )
    with refused("expired"):
        jws.verify(jws.sign(QUERY, old.signing_key, [old.signing_cert]), region.anchors())
    # a message from a once-valid signer, verified after its certificate ended (with a
    # trust list and CRL that are current at that time)
    token = sign_th(region)
    late = region.nodes["TH"].signing_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    members = [(n.country, n.tls_cert, n.signing_cert) for n in region.nodes.values()]
    anchors = TrustAnchors.load(
        certificate_pem(region.ca.cert),
        region.ca.trust_list(members, now=late).encode(),
        crl_pem(region.ca.crl(now=late)),
        now=late,
    )
    with refused("expired"):
        jws.verify(token, anchors, now=late)


def test_wrong_country_is_refused(region: Region) -> None:
    th = region.nodes["TH"]
    with refused("wrong_country"):  # sign() refuses to claim another sender
        jws.sign({**QUERY, "sender": "ID"}, th.signing_key, [th.signing_cert])
    forged = sign_compact(
        canonical_json({**QUERY, "sender": "ID"}),
        th.signing_key,
        [th.signing_cert],
        typ="bdx-msg+jws",
    )
    with refused("wrong_country"):
        jws.verify(forged, region.anchors())
    with refused("wrong_country"):  # e.g. the mutual-TLS peer is ID but TH signed
        jws.verify(sign_th(region), region.anchors(), expected_country="ID")


def test_tls_certificate_used_to_sign_is_refused(region: Region) -> None:
    th = region.nodes["TH"]
    with refused("wrong_key_usage"):  # sign() refuses locally ...
        jws.sign(QUERY, th.tls_key, [th.tls_cert])
    token = sign_compact(canonical_json(QUERY), th.tls_key, [th.tls_cert], typ="bdx-msg+jws")
    with refused("wrong_key_usage"):  # ... and so does every verifier
        jws.verify(token, region.anchors())
    with refused("malformed"):
        jws.sign(QUERY, th.signing_key, [])


def test_signer_not_in_trust_list_is_refused(region: Region) -> None:
    sg = make_node(region.ca, "SG")
    with refused("not_in_trust_list"):
        jws.verify(
            jws.sign({**QUERY, "sender": "SG"}, sg.signing_key, [sg.signing_cert]), region.anchors()
        )


def test_trust_list_rollback_and_stale_list_are_refused() -> None:
    fresh = build_region(["TH", "ID"])
    anchors = fresh.anchors()
    members = [(n.country, n.tls_cert, n.signing_cert) for n in fresh.nodes.values()]
    anchors.refresh_trust_list(fresh.ca.trust_list(members).encode())
    with refused("rollback"):
        anchors.refresh_trust_list(fresh.trust_list.encode())
    token = sign_th(fresh)
    with refused("stale_trust_list"):
        jws.verify(token, anchors, now=NOW + dt.timedelta(days=30))


def test_malformed_messages_are_refused(region: Region) -> None:
    th = region.nodes["TH"]
    for junk in ("", "abc", "a.b.c", "x" * (3 << 20)):
        with refused("malformed"):
            jws.verify(junk, region.anchors())
    with refused("malformed"):  # a header without x5c
        jws.verify(_with_header(sign_th(region), x5c=[]), region.anchors())
    with refused("bad_certificate"):
        jws.verify(_with_header(sign_th(region), x5c=["AAAA"]), region.anchors())
    spaced = sign_compact(
        json.dumps(QUERY).encode(), th.signing_key, [th.signing_cert], typ="bdx-msg+jws"
    )
    with refused("malformed"):  # not canonical bytes
        jws.verify(spaced, region.anchors())
    v2 = sign_compact(
        canonical_json({**QUERY, "v": 2}), th.signing_key, [th.signing_cert], typ="bdx-msg+jws"
    )
    with refused("unsupported_version"):
        jws.verify(v2, region.anchors())
    for bad in ({**QUERY, "score": 0.5}, {**QUERY, "v": 3}, {"sender": "TH"}, {"v": 1}):
        with pytest.raises(PkiError):
            jws.sign(bad, th.signing_key, [th.signing_cert])
    with refused("weak_algorithm"):  # ES256 needs a P-256 key
        jws.sign(QUERY, ec.generate_private_key(ec.SECP384R1()), [th.signing_cert])


def _nested(depth: int) -> bytes:
    return b'{"sender":"TH","v":1,"x":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [33, 2_000])
def test_deeply_nested_payloads_and_headers_are_malformed(region: Region, depth: int) -> None:
    """A few KB of brackets exhausted the JSON parser's stack: an untyped RecursionError (a
    bare 500 on the peer port, and no refusal in the exchange log). Nesting beyond
    MAX_JSON_DEPTH is refused as malformed, in a signed payload and in an unsigned header."""
    th = region.nodes["TH"]
    token = sign_compact(_nested(depth), th.signing_key, [th.signing_cert], typ="bdx-msg+jws")
    with refused("malformed"):
        jws.verify(token, region.anchors())
    header = base64.urlsafe_b64encode(_nested(depth)).rstrip(b"=").decode()
    with refused("malformed"):
        jws.verify(f"{header}.e30.{'A' * 86}", region.anchors())


def test_header_parameters_of_the_signers_choosing_are_refused(region: Region) -> None:
    """A validly signed token whose header carries anything but alg, typ, kid, x5t#S256 and
    x5c, or a kid that is not x5t#S256, is refused: a stored reply would otherwise keep
    whatever text its signer put there (a name, a probe). Error messages do not quote such
    values either."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    th = region.nodes["TH"]
    header = json.loads(unb64url(sign_th(region).split(".")[0]))
    payload = b64url(canonical_json(QUERY))

    def signed(fields: dict[str, Any] | bytes) -> str:  # ES256 by hand, any header bytes
        head = fields if isinstance(fields, bytes) else json.dumps(fields, separators=(",", ":"))
        text = f"{b64url(head if isinstance(head, bytes) else head.encode())}.{payload}"
        r, s = decode_dss_signature(th.signing_key.sign(text.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{text}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    jws.verify(signed(header), region.anchors())  # the hand-made token is sound
    for changes in (
        {"note": "Jane Doe, born 1980"},
        {"kid": "Jane Doe, born 1980"},
        {"typ": "Jane Doe, born 1980"},
    ):
        with pytest.raises(PkiError) as err:
            jws.verify(signed({**header, **changes}), region.anchors())
        assert err.value.reason in ("malformed", "wrong_type") and "Jane" not in str(err.value)
    compact = json.dumps(header, separators=(",", ":"))
    hidden = compact.replace('"kid":', '"kid":"Jane Doe","kid":', 1)  # parsers keep the last
    other = build_region(["TH"]).nodes["TH"].signing_cert  # a second certificate in x5c
    extra = {
        **header,
        "x5c": [*header["x5c"], base64.b64encode(other.public_bytes(Encoding.DER)).decode()],
    }
    # A certificate whose base64 is padded (its last character then has unused bits): the
    # check is made on the header, before any signature or chain, so any such one serves.
    cert = header["x5c"][0]
    for n in range(40):
        if cert.endswith("="):
            break
        extra_node = make_node(region.ca, "TH", node_name=f"th-{n}")
        cert = base64.b64encode(extra_node.signing_cert.public_bytes(Encoding.DER)).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    at = len(cert.rstrip("=")) - 1  # its last character has unused bits when padded
    stray = cert[:at] + alphabet[alphabet.index(cert[at]) ^ 1] + cert[at + 1 :]
    assert cert.endswith("=") and base64.b64decode(stray) == base64.b64decode(cert)
    padded = {**header, "x5c": [stray]}
    for bad in (hidden.encode(), json.dumps(header).encode(), extra, padded):
        with refused("malformed"):
            jws.verify(signed(bad), region.anchors())
    with refused("malformed"):  # what verify would refuse is not signed either
        jws.sign(QUERY, th.signing_key, [th.signing_cert, th.signing_cert])
