"""Human/JSON descriptions of PKI files for ``bdx pki show`` (nothing here is verified)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from cryptography import x509

from certs.pki import params, reasons
from certs.pki.errors import PkiInputError
from certs.pki.keys import fingerprint


def _when(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _usage_name(oid: x509.ObjectIdentifier) -> str:
    """A readable name of an extended key usage: the project's own message-signing usage by
    its purpose (cryptography calls every unregistered one "Unknown OID")."""
    if oid == params.SIGNING_EKU:
        return f"bdxMessageSigning ({oid.dotted_string})"
    name = getattr(oid, "_name", None)
    return oid.dotted_string if name in (None, "Unknown OID") else str(name)


def _certificate(cert: x509.Certificate) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": "certificate",
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": _when(cert.not_valid_before_utc),
        "not_after": _when(cert.not_valid_after_utc),
        "sha256": fingerprint(cert),
    }
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.ExtendedKeyUsage):
            info["extended_key_usage"] = ",".join(_usage_name(o) for o in value)
        elif isinstance(value, x509.SubjectAlternativeName):
            info["san"] = ",".join(str(n.value) for n in value)
        elif isinstance(value, x509.BasicConstraints):
            info["ca"] = value.ca
    return info


def _jws(text: str) -> dict[str, Any]:
    header_b64, payload_b64, _sig = text.split(".")

    def unb64(part: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    header = unb64(header_b64)
    payload = unb64(payload_b64)
    info: dict[str, Any] = {"type": "jws", "typ": header.get("typ"), "alg": header.get("alg")}
    if isinstance(payload, dict) and payload.get("type") == "bdx-trust-list":
        info.update(
            type="trust_list",
            sequence=payload.get("sequence"),
            issued_at=dt.datetime.fromtimestamp(payload["issued_at"], dt.UTC).isoformat(),
            next_update=dt.datetime.fromtimestamp(payload["next_update"], dt.UTC).isoformat(),
            members=",".join(m["country"] for m in payload.get("members", [])),
        )
    elif isinstance(payload, dict):
        info.update(
            sender=payload.get("sender"), v=payload.get("v"), keys=",".join(sorted(payload))
        )
    return info


def describe(data: bytes) -> dict[str, Any]:
    """Identify ``data`` (certificate, CSR, CRL, trust list or JWS) and list its main fields."""
    text = data.strip()
    try:
        if b"-----BEGIN CERTIFICATE-----" in text:
            return _certificate(x509.load_pem_x509_certificate(text))
        if b"-----BEGIN CERTIFICATE REQUEST-----" in text:
            csr = x509.load_pem_x509_csr(text)
            return {
                "type": "csr",
                "subject": csr.subject.rfc4514_string(),
                "signature_ok": csr.is_signature_valid,
            }
        if b"-----BEGIN X509 CRL-----" in text:
            crl = x509.load_pem_x509_crl(text)
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            return {
                "type": "crl",
                "issuer": crl.issuer.rfc4514_string(),
                "number": number,
                "this_update": _when(crl.last_update_utc),
                "next_update": _when(crl.next_update_utc),
                "revoked": ",".join(f"{r.serial_number:x}" for r in crl) or "-",
            }
        if text.count(b".") == 2 and not text.startswith(b"-"):
            return _jws(text.decode("ascii"))
        return _certificate(x509.load_der_x509_certificate(text))
    except (ValueError, KeyError, TypeError, binascii.Error, x509.ExtensionNotFound) as exc:
        raise PkiInputError(f"not a recognised PKI file: {exc}", reason=reasons.MALFORMED) from None
    except RecursionError:  # JSON nested deeper than the parser's stack
        raise PkiInputError("not a recognised PKI file", reason=reasons.MALFORMED) from None
