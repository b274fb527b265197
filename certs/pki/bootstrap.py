"""A whole demo region in one call: root CA, each country's TLS and signing keys and
certificates, the signed trust list and the CRL (used by ``bdx pki bootstrap``, ``make demo``
and the tests, which exercise the real PKI rather than fixtures).

Layout written by :func:`write_region`::

    ca/ca.key ca/ca.pem ca/state.json     the root CA (keep offline in production)
    root.pem  trust-list.jws  crl.pem     what every node loads
    nodes/<cc>/tls.key tls.pem signing.key signing.pem
    region.json                           manifest (countries and paths)
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certs.pki import names, params
from certs.pki.builders import CsrBuilder
from certs.pki.ca import CertificateAuthority
from certs.pki.keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    write_private_key,
    write_public,
)
from certs.pki.profiles import Usage
from certs.pki.revocation import crl_pem
from certs.pki.validate import TrustAnchors

# Default DNS name of a country's node in the demo (docker-compose service name).
DNS_TEMPLATE = "node-{cc}"
# Every demo TLS certificate also names the loopback host, so nodes can run side by side.
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class NodeMaterial:
    """One country's keys and certificates."""

    country: str
    tls_key: PrivateKey
    tls_cert: x509.Certificate
    signing_key: PrivateKey
    signing_cert: x509.Certificate


def make_node(
    ca: CertificateAuthority,
    country: str,
    *,
    node_name: str | None = None,
    dns: Sequence[str] | None = None,
    ips: Sequence[str] = LOOPBACK_IPS,
    not_before: dt.datetime | None = None,
    validity: dt.timedelta = params.NODE_VALIDITY,
) -> NodeMaterial:
    """Keys, CSRs and certificates (TLS + signing) of one country's node, issued by ``ca``."""
    code = names.validate_country(country)
    name = node_name or f"bdx-{code.lower()}"
    dns_names = (
        list(dns) if dns is not None else [DNS_TEMPLATE.format(cc=code.lower()), *LOOPBACK_DNS]
    )
    base = CsrBuilder().country(code).node_name(name)
    tls_key, signing_key = generate_key(), generate_key()
    tls_csr = base.usage(Usage.TLS).dns_names(dns_names).ip_addresses(ips).sign(tls_key)
    signing_csr = base.usage(Usage.SIGNING).sign(signing_key)
    tls_cert = ca.issue(tls_csr, Usage.TLS, validity=validity, not_before=not_before)
    signing_cert = ca.issue(signing_csr, Usage.SIGNING, validity=validity, not_before=not_before)
    return NodeMaterial(code, tls_key, tls_cert, signing_key, signing_cert)


@dataclass(frozen=True)
class Region:
    """A CA, its member nodes, and the published trust list and CRL."""

    ca: CertificateAuthority
    nodes: dict[str, NodeMaterial]
    trust_list: str
    crl: bytes

    def anchors(self, *, now: dt.datetime | None = None) -> TrustAnchors:
        return TrustAnchors.load(
            certificate_pem(self.ca.cert), self.trust_list.encode("ascii"), self.crl, now=now
        )


def build_region(countries: Sequence[str], *, ca_country: str | None = None) -> Region:
    """An in-memory region for ``countries`` (root C= is ``ca_country`` or the first one)."""
    codes = [names.validate_country(c) for c in countries]
    if not codes:
        raise ValueError("a region needs at least one country")
    ca = CertificateAuthority.create(ca_country or codes[0])
    nodes = {cc: make_node(ca, cc) for cc in codes}
    token = ca.trust_list([(n.country, n.tls_cert, n.signing_cert) for n in nodes.values()])
    return Region(ca, nodes, token, crl_pem(ca.crl()))


def write_region(
    region: Region, out: str | os.PathLike[str], *, passphrase: bytes | None = None
) -> dict[str, str]:
    """Write ``region`` under ``out`` (layout in the module docstring); return the manifest."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    region.ca.save(root / "ca", passphrase=passphrase)
    write_public(root / "root.pem", certificate_pem(region.ca.cert))
    write_public(root / "trust-list.jws", region.trust_list.encode("ascii") + b"\n")
    write_public(root / "crl.pem", region.crl)
    manifest: dict[str, str] = {
        "root": "root.pem",
        "trust_list": "trust-list.jws",
        "crl": "crl.pem",
    }
    for cc, node in region.nodes.items():
        folder = root / "nodes" / cc.lower()
        folder.mkdir(parents=True, exist_ok=True)
        write_private_key(folder / "tls.key", node.tls_key, passphrase)
        write_public(folder / "tls.pem", certificate_pem(node.tls_cert))
        write_private_key(folder / "signing.key", node.signing_key, passphrase)
        write_public(folder / "signing.pem", certificate_pem(node.signing_cert))
        manifest[f"node_{cc.lower()}"] = f"nodes/{cc.lower()}"
    write_public(
        root / "region.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    )
    return manifest
