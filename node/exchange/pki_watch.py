"""Telling the operator how this node's own PKI documents stand.

A stale trust list or CRL, or an expired or revoked own certificate, makes the peer exchange
refuse (fail closed), but nothing else on the node: :func:`explain` says which document, since
when, and until what the exchange refuses (local commands print it as a warning).
"""

from __future__ import annotations

from certs.pki.standing import Document, Notice

#: What the operator is told to do about a refusing notice, by document.
_REMEDY: dict[Document, str] = {
    "trust_list": "until a newer trust list is published in pki_dir",
    "crl": "until a newer CRL is published in pki_dir",
    "tls_certificate": "until it is renewed",
    "signing_certificate": "until it is renewed",
}


def explain(notice: Notice) -> str:
    """``notice``'s message and, when it refuses, what the exchange does until when."""
    if not notice.refusing:
        return notice.message
    return (
        f"{notice.message}: the peer exchange refuses every query and witnessing "
        f"{_REMEDY[notice.document]} [{notice.code}]"
    )
