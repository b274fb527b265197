"""Certificate validation against the real root, trust list and CRL: every refusal reason."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs.pki import (
    CertificateAuthority,
    CrlRefused,
    CsrBuilder,
    NodeCertificateBuilder,
    PkiInputError,
    Usage,
)
from certs.pki.bootstrap import Region, build_region, make_node
from certs.pki.keys import certificate_pem, fingerprint, generate_key
from certs.pki.revocation import crl_pem
from certs.pki.trustlist import TrustListBuilder, load_trust_list, sign_trust_list_payload

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def region() -> Region:
    return build_region(["TH", "ID", "MY"])


class _Reason:
    """Context manager: the block raises a PkiError with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        assert exc is not None, f"expected a refusal with reason {self.reason!r}"
        assert getattr(exc, "reason", None) == self.reason, f"{exc!r} is not {self.reason}"
        return True


def test_valid_certificates_give_the_identity(region: Region) -> None:
    anchors = region.anchors()
    for cc, node in region.nodes.items():
        tls = anchors.validate(node.tls_cert, Usage.TLS, expected_country=cc)
        assert (tls.country, tls.usage, tls.node_name) == (cc, Usage.TLS, f"bdx-{cc.lower()}")
        assert tls.fingerprint == fingerprint(node.tls_cert)
        signing = anchors.validate(node.signing_cert, "signing")
        assert signing.country == cc
    # DER bytes are accepted too, and a repeat hits the cache with the same answer
    der = region.nodes["TH"].tls_cert.public_bytes(serialization.Encoding.DER)
    assert anchors.validate(der, Usage.TLS) == anchors.validate(der, Usage.TLS)


def test_wrong_usage_is_refused(region: Region) -> None:
    anchors = region.anchors()
    th = region.nodes["TH"]
    with _Reason("wrong_key_usage"):
        anchors.validate(th.signing_cert, Usage.TLS)
    with _Reason("wrong_key_usage"):
        anchors.validate(th.tls_cert, Usage.SIGNING)
    with _Reason("wrong_key_usage"):
        anchors.validate(region.ca.cert, Usage.TLS)


def test_wrong_country_is_refused(region: Region) -> None:
    with _Reason("wrong_country"):
        region.anchors().validate(region.nodes["TH"].tls_cert, Usage.TLS, expected_country="ID")


def test_trust_list_entry_for_another_country_is_refused(region: Region) -> None:
    th = region.nodes["TH"]
    # the CA (by mistake, bypassing the builder's check) lists TH's certificates under ID
    builder = TrustListBuilder().sequence(9).add_member("TH", th.tls_cert, th.signing_cert)
    payload = builder.payload(region.ca.cert)
    payload["members"][0]["country"] = "ID"
    token = sign_trust_list_payload(payload, region.ca.key, region.ca.cert)
    anchors = region.anchors()
    anchors.refresh_trust_list(token.encode())
    with _Reason("wrong_country"):
        anchors.validate(th.tls_cert, Usage.TLS)


def test_certificate_from_another_ca_is_refused(region: Region) -> None:
    other = build_region(["TH"])
    with _Reason("unknown_ca"):
        region.anchors().validate(other.nodes["TH"].tls_cert, Usage.TLS)
    with _Reason("unknown_ca"):
        region.anchors().validate(other.nodes["TH"].signing_cert, Usage.SIGNING)


def test_not_in_trust_list_is_refused(region: Region) -> None:
    sg = make_node(region.ca, "SG")
    with _Reason("not_in_trust_list"):
        region.anchors().validate(sg.tls_cert, Usage.TLS)


def test_expired_and_not_yet_valid_are_refused(region: Region) -> None:
    old = make_node(
        region.ca, "TH", not_before=NOW - dt.timedelta(days=400), validity=dt.timedelta(days=30)
    )
    assert old.tls_cert.not_valid_after_utc < NOW
    with _Reason("expired"):
        region.anchors().validate(old.tls_cert, Usage.TLS)
    future = make_node(region.ca, "TH", not_before=NOW + dt.timedelta(days=2))
    with _Reason("not_yet_valid"):
        region.anchors().validate(future.signing_cert, Usage.SIGNING)
    # a cached, once-valid certificate is refused once its window has passed (a long grace
    # keeps the trust list and CRL usable that far ahead, so the certificate is the cause)
    th = region.nodes["TH"]
    anchors = region.anchors()
    anchors.grace = dt.timedelta(days=3650)
    anchors.validate(th.tls_cert, Usage.TLS)
    later = th.tls_cert.not_valid_after_utc + dt.timedelta(seconds=1)
    with _Reason("expired"):
        anchors.validate(th.tls_cert, Usage.TLS, now=later)


def _leaf(region: Region, key: object, hash_alg: hashes.HashAlgorithm) -> x509.Certificate:
    csr = CsrBuilder().country("TH").usage("tls").dns_names(["x"]).sign(generate_key())
    good = NodeCertificateBuilder(csr, Usage.TLS).sign(region.ca.key, region.ca.cert)
    builder = x509.CertificateBuilder(
        issuer_name=good.issuer,
        subject_name=good.subject,
        public_key=key.public_key(),  # type: ignore[attr-defined]
        serial_number=x509.random_serial_number(),
        not_valid_before=good.not_valid_before_utc,
        not_valid_after=good.not_valid_after_utc,
        extensions=list(good.extensions),
    )
    return builder.sign(region.ca.key, hash_alg)  # type: ignore[arg-type]


def test_weak_algorithms_are_refused(region: Region) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with _Reason("weak_algorithm"):
        region.anchors().validate(_leaf(region, rsa_key, hashes.SHA256()), Usage.TLS)
    p521 = ec.generate_private_key(ec.SECP521R1())  # not on the allow-list (P-256/P-384)
    with _Reason("weak_algorithm"):
        region.anchors().validate(_leaf(region, p521, hashes.SHA256()), Usage.TLS)
    with _Reason("weak_algorithm"):
        region.anchors().validate(_leaf(region, generate_key(), hashes.SHA224()), Usage.TLS)


def test_unknown_signature_algorithm_is_a_typed_refusal(region: Region) -> None:
    """A certificate that decodes but names no known signature algorithm (OID
    1.2.840.10045.4.3.9) used to escape as cryptography's UnsupportedAlgorithm (a 500 on the
    peer endpoint, which takes the certificate from the attacker-controlled x5c header)."""
    der = region.nodes["TH"].signing_cert.public_bytes(serialization.Encoding.DER)
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    odd = der.replace(ecdsa_sha256, bytes.fromhex("06082a8648ce3d040309"))
    assert odd != der
    with _Reason("bad_certificate"):
        region.anchors().validate(odd, Usage.SIGNING)


def test_revoked_certificate_is_refused_after_crl_refresh() -> None:
    region = build_region(["TH", "ID"])
    anchors = region.anchors()
    th = region.nodes["TH"]
    anchors.validate(th.tls_cert, Usage.TLS)  # cached as valid
    region.ca.revoke(th.tls_cert, reason=x509.ReasonFlags.key_compromise)
    new_crl = crl_pem(region.ca.crl())
    anchors.refresh_crl(new_crl)
    assert anchors.crl.number == 2
    with _Reason("revoked"):
        anchors.validate(th.tls_cert, Usage.TLS)
    anchors.validate(th.signing_cert, Usage.SIGNING)  # only the TLS cert was revoked
    with _Reason("rollback"):
        anchors.refresh_crl(region.crl)  # the first CRL, number 1
    with _Reason("revoked"):  # the refused refresh left the held CRL in place
        anchors.validate(th.tls_cert, Usage.TLS)


def test_crl_refusals() -> None:
    region = build_region(["TH"])
    other = build_region(["TH"])
    anchors = region.anchors()
    with pytest.raises(CrlRefused) as bad:
        anchors.refresh_crl(other.crl)
    assert bad.value.reason == "bad_signature"
    with _Reason("malformed"):
        anchors.refresh_crl(b"not a crl")
    stale = crl_pem(region.ca.crl(now=NOW - dt.timedelta(days=30)))
    with _Reason("stale_crl"):
        anchors.refresh_crl(stale)
    anchors.refresh_crl(crl_pem(region.ca.crl(now=NOW, validity=dt.timedelta(days=1))))
    with _Reason("stale_crl"):  # the CRL's next update + 1 day grace has passed
        anchors.validate(region.nodes["TH"].tls_cert, Usage.TLS, now=NOW + dt.timedelta(days=3))


def test_ca_refuses_to_revoke_a_foreign_certificate(region: Region) -> None:
    other = build_region(["TH"])
    with _Reason("unknown_ca"):
        region.ca.revoke(other.nodes["TH"].tls_cert)


def test_builders_are_immutable_and_validate_input() -> None:
    base = CsrBuilder()
    th = base.country("th")
    assert base != th and base._country is None and th._country == "TH"
    with _Reason("invalid_country"):
        base.country("XX")
    with _Reason("invalid_country"):
        base.country("Thailand")
    with _Reason("invalid_node_name"):
        th.node_name("bad name!")
    with _Reason("bad_csr"):
        th.usage("tls").sign(generate_key())  # TLS needs a SAN
    with _Reason("bad_csr"):
        th.usage("signing").dns_names(["a"]).sign(generate_key())
    with _Reason("bad_csr"):
        base.sign(generate_key())
    with _Reason("invalid_ip"):
        th.ip_addresses(["999.1.1.1"])
    for bad in (
        "",
        "a b",
        "-a.example",
        "a-.example",
        "x..y",
        "node.example.",
        "*.example",
        "node_1.example",
        "bücher.example",
        "10.0.0.1",
        "a" * 64 + ".example",
        ".".join(["abcdefg"] * 32),
    ):
        with _Reason("invalid_dns_name"):
            th.dns_names([bad])
    assert th.dns_names(["Node-TH.Example", "xn--bcher-kva.example", "localhost"])._dns == (
        "node-th.example",
        "xn--bcher-kva.example",
        "localhost",
    )
    with pytest.raises(ValueError):
        th.usage("email")


def _external_csr(common_name: str, sans: list[x509.GeneralName]) -> x509.CertificateSigningRequest:
    """A TLS CSR made outside ``bdx pki request`` (as by openssl or an HSM's tool)."""
    name = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "TH"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(generate_key(), hashes.SHA256())


def test_issuing_vouches_only_for_node_names_and_addresses() -> None:
    """The CA copied a TLS CSR's CN and subjectAltName as they came: e-mail and URI names,
    a host name with a space, 100 names, a CN with a terminal escape all got certified."""
    ca = CertificateAuthority.create("TH")
    ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    good = ca.issue(_external_csr("bdx-th-tls", [x509.DNSName("node-th.example"), ip]), "tls")
    assert good.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == (
        x509.SubjectAlternativeName([x509.DNSName("node-th.example"), ip])
    )
    refused = [
        _external_csr("bdx-th-tls", [x509.DNSName("a b")]),
        _external_csr("bdx-th-tls", [x509.DNSName("*.example")]),
        _external_csr("bdx-th-tls", [x509.RFC822Name("ops@example.org")]),
        _external_csr("bdx-th-tls", [x509.UniformResourceIdentifier("https://example.org/")]),
        _external_csr("bdx-th-tls", [x509.DNSName(f"n{i}.example") for i in range(17)]),
        _external_csr("bdx-th-tls\x1b[31m", [x509.DNSName("node-th.example")]),
        _external_csr("bdx th", [x509.DNSName("node-th.example")]),
    ]
    for csr in refused:
        with _Reason("bad_csr"):
            ca.issue(csr, "tls")


def test_issuing_refuses_a_csr_without_a_valid_country() -> None:
    ca = CertificateAuthority.create("TH")
    key = generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "ZZ")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    with pytest.raises(PkiInputError) as err:
        ca.issue(csr, Usage.SIGNING)
    assert err.value.reason == "invalid_country"
    p521 = CsrBuilder().country("TH").usage("signing").sign(ec.generate_private_key(ec.SECP521R1()))
    with _Reason("weak_algorithm"):
        ca.issue(p521, Usage.SIGNING)
    tls_csr = CsrBuilder().country("TH").usage("signing").sign(key)
    with _Reason("bad_csr"):
        ca.issue(tls_csr, Usage.TLS)  # a TLS certificate needs the CSR's SAN
    issued = ca.issue(tls_csr, Usage.SIGNING)
    assert certificate_pem(issued).startswith(b"-----BEGIN CERTIFICATE")
    assert f"{issued.serial_number:x}" in ca.state["issued"]


def test_cached_identity_only_for_what_validate_accepted_under_the_held_documents() -> None:
    region = build_region(["TH", "ID"])
    anchors = region.anchors()
    th = region.nodes["TH"]
    der = th.tls_cert.public_bytes(serialization.Encoding.DER)
    assert anchors.cached(der, Usage.TLS) is None  # never validated: the caller must validate
    identity = anchors.validate(der, Usage.TLS)
    assert anchors.cached(der, Usage.TLS) == identity
    assert anchors.cached(der, Usage.SIGNING) is None  # cached per usage
    # outside the certificate's validity window the cached identity is not given
    before = identity.not_before - dt.timedelta(seconds=1)
    assert anchors.cached(der, Usage.TLS, now=before) is None
    # a new CRL (here revoking the certificate) drops what was cached under the old one
    region.ca.revoke(th.tls_cert, reason=x509.ReasonFlags.key_compromise)
    anchors.refresh_crl(crl_pem(region.ca.crl()))
    assert anchors.cached(der, Usage.TLS) is None
    with _Reason("revoked"):
        anchors.validate(der, Usage.TLS)
    assert anchors.cached(der, Usage.TLS) is None  # a refusal is never cached


def _payload(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    parsed: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return parsed


def test_a_renewed_member_is_listed_with_its_old_and_new_certificates(region: Region) -> None:
    """TH renews its certificates: the CA lists TH with both pairs (version 2), and both
    validate; a list with one pair per member stays version 1, which older nodes read. A
    third pair or a version 2 member without lists are refused; one usage may be renewed alone.
    The builder refused a country added twice ("TH is listed twice"), so old and new could
    never be listed together during a renewal."""
    old, new = region.nodes["TH"], make_node(region.ca, "TH", not_before=NOW)
    idn = region.nodes["ID"]
    pairs = [("TH", new.tls_cert, new.signing_cert), ("ID", idn.tls_cert, idn.signing_cert)]
    token = region.ca.trust_list([("TH", old.tls_cert, old.signing_cert), *pairs])
    body = _payload(token)
    assert body["v"] == 2
    members = body["members"]
    assert isinstance(members, list) and [m["country"] for m in members] == ["ID", "TH"]
    assert len(members[1]["tls"]) == len(members[1]["signing"]) == 2
    assert isinstance(members[0]["tls"], list) and len(members[0]["tls"]) == 1
    anchors = region.anchors()
    anchors.refresh_trust_list(token.encode())
    for node in (old, new):
        assert anchors.validate(node.tls_cert, Usage.TLS).country == "TH"
        assert anchors.validate(node.signing_cert, Usage.SIGNING).country == "TH"
    member = anchors.trust_list.member("TH")
    assert member is not None and member.tls[-1] == new.tls_cert  # oldest first
    # the renewal is over: one pair each again, version 1
    single = _payload(region.ca.trust_list(pairs))
    assert single["v"] == 1 and isinstance(single["members"], list)
    assert all(isinstance(m["tls"], str) for m in single["members"])
    third = make_node(region.ca, "TH")
    builder = TrustListBuilder().add_member("TH", old.tls_cert, old.signing_cert)
    builder = builder.add_member("TH", new.tls_cert, new.signing_cert)
    with _Reason("malformed"):
        builder.add_member("TH", third.tls_cert, third.signing_cert)
    # a renewal of the signing certificate alone (the TLS one given again stays listed once):
    # it was refused as "listed twice", so the two kinds could not be renewed apart
    signing_only = (
        TrustListBuilder()
        .add_member("TH", old.tls_cert, old.signing_cert)
        .add_member("TH", old.tls_cert, new.signing_cert)
        .payload(region.ca.cert)
    )
    listed = signing_only["members"][0]
    assert (len(listed["tls"]), len(listed["signing"])) == (1, 2)
    payload = builder.payload(region.ca.cert)
    payload["members"][0]["tls"] = payload["members"][0]["tls"][0]  # a string in version 2
    forged = sign_trust_list_payload(payload, region.ca.key, region.ca.cert)
    with _Reason("malformed"):
        load_trust_list(forged, region.ca.cert, now=NOW)
