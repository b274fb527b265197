"""How a node's own PKI material stands now: its held trust list and CRL, its own TLS and
signing certificates.

:func:`assess` returns one :class:`Notice` per document that needs the operator: a list past
its next update (``expiring``: it goes stale after the grace) or past next update + grace
(``stale``); a certificate within :data:`~certs.pki.params.CERT_EXPIRY_WARNING` of its end
(``expiring``), past it (``expired``), or refused for another reason (``refused``: revoked,
not in the trust list, not yet valid). Any notice but ``expiring`` means the peer exchange
refuses: peers' certificates do not validate under a stale list, and peers refuse this node's
expired or revoked certificates. Nothing here raises for what it finds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from certs.errors import CertsError
from certs.pki import params, reasons
from certs.pki.credentials import NodeCredentials
from certs.pki.profiles import Usage

Document = Literal["trust_list", "crl", "tls_certificate", "signing_certificate"]
State = Literal["expiring", "stale", "expired", "refused"]

#: The documents' names in sentences.
NAMES: dict[Document, str] = {
    "trust_list": "trust list",
    "crl": "CRL",
    "tls_certificate": "TLS certificate",
    "signing_certificate": "signing certificate",
}


@dataclass(frozen=True)
class Notice:
    """One document of this node's that needs the operator: ``reason`` is a stable code
    (``stale_crl``, ``expired``, ``revoked``, ``due_for_update``, ``expires_soon``...),
    ``at`` when it went or goes stale, expires or expired, was revoked (the CRL entry's
    revocation date) or becomes valid; ``None`` for a refusal without a date (a certificate
    not in the trust list, listed for another country or usage...)."""

    document: Document
    state: State
    reason: str
    at: dt.datetime | None
    message: str

    @property
    def refusing(self) -> bool:
        """Whether the peer exchange refuses because of it (anything but ``expiring``)."""
        return self.state != "expiring"

    @property
    def code(self) -> str:
        """The reason as this node's, not a peer's: ``own_stale_crl``,
        ``own_certificate_expired``..."""
        if self.document.endswith("_certificate"):
            return f"own_certificate_{self.reason}"
        return f"own_{self.reason}"


def _when(at: dt.datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}Z"


def assess(
    creds: NodeCredentials,
    now: dt.datetime | None = None,
    *,
    lead: dt.timedelta = params.CERT_EXPIRY_WARNING,
) -> list[Notice]:
    """The notices of ``creds``' documents at ``now`` (see the module docstring)."""
    when = now or dt.datetime.now(dt.UTC)
    anchors = creds.anchors
    out: list[Notice] = []
    tl, crl = anchors.trust_list, anchors.crl
    lists: list[tuple[Document, str, dt.datetime, str]] = [
        ("trust_list", f"sequence {tl.sequence}", tl.next_update, reasons.STALE_TRUST_LIST),
        ("crl", f"number {crl.number}", crl.next_update, reasons.STALE_CRL),
    ]
    for document, which, next_update, stale in lists:
        name = f"this node's {NAMES[document]} ({which})"
        stale_at = next_update + anchors.grace
        if when > stale_at:
            message = (
                f"{name} was due for update at {_when(next_update)} and is stale since "
                f"{_when(stale_at)}"
            )
            out.append(Notice(document, "stale", stale, stale_at, message))
        elif when > next_update:
            message = (
                f"{name} was due for update at {_when(next_update)}; it goes stale at "
                f"{_when(stale_at)} unless a newer one is published"
            )
            out.append(Notice(document, "expiring", "due_for_update", stale_at, message))
    fresh = not out or all(n.state == "expiring" for n in out)
    certificates: list[tuple[Document, x509.Certificate, Usage]] = [
        ("tls_certificate", creds.tls_cert, Usage.TLS),
        ("signing_certificate", creds.signing_cert, Usage.SIGNING),
    ]
    for document, cert, usage in certificates:
        notice = _certificate(creds, document, cert, usage, when, lead, check=fresh)
        if notice is not None:
            out.append(notice)
    return out


def _certificate(
    creds: NodeCredentials,
    document: Document,
    cert: x509.Certificate,
    usage: Usage,
    when: dt.datetime,
    lead: dt.timedelta,
    *,
    check: bool,
) -> Notice | None:
    """The notice of one own certificate; with ``check`` (the lists are not stale) it is
    also validated (revoked, not in the trust list...)."""
    name = f"this node's {NAMES[document]} (serial {cert.serial_number:x})"
    not_after = min(cert.not_valid_after_utc, creds.anchors.root.not_valid_after_utc)
    not_before = max(cert.not_valid_before_utc, creds.anchors.root.not_valid_before_utc)
    if when > not_after:
        message = f"{name} expired at {_when(not_after)}"
        return Notice(document, "expired", reasons.EXPIRED, not_after, message)
    if when < not_before:
        message = f"{name} is valid only from {_when(not_before)}"
        return Notice(document, "refused", reasons.NOT_YET_VALID, not_before, message)
    if check:
        try:
            creds.anchors.validate(cert, usage, expected_country=creds.country, now=when)
        except CertsError as exc:
            at = _revoked_at(creds, cert) if exc.reason == reasons.REVOKED else None
            since = f" since {_when(at)}" if at is not None else ""
            message = f"{name} is refused: {exc.message}{since}"
            return Notice(document, "refused", exc.reason, at, message)
    if when > not_after - lead:
        message = f"{name} expires at {_when(not_after)}; have it renewed before then"
        return Notice(document, "expiring", "expires_soon", not_after, message)
    return None


def _revoked_at(creds: NodeCredentials, cert: x509.Certificate) -> dt.datetime | None:
    """When the held CRL says ``cert`` was revoked (its entry's revocation date), if it lists
    it (the CRL was verified when it was taken; only its entries' dates are read again)."""
    raw = creds.anchors.crl.raw
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(raw)
        else:
            crl = x509.load_der_x509_crl(raw)
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    except ValueError:
        return None
    return entry.revocation_date_utc if entry is not None else None
