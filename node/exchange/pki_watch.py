"""Telling the operator how this node's own PKI documents stand, while it runs.

A stale trust list or CRL, or an expired or revoked own certificate, makes the peer exchange
refuse (fail closed), but nothing else changes on the node: :class:`PkiWatch` checks them
(:func:`certs.pki.standing.assess`) at start and in every housekeeping round and logs each
change once: WARNING when a document nears its end (a list past its next update, within its
grace; a certificate within ``CERT_EXPIRY_WARNING``), ERROR once the exchange refuses because
of it, INFO when it is in order again. :meth:`PkiWatch.refusal` is what makes an officer's
query fail here, naming this node, before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import logging

from certs.pki.credentials import NodeCredentials
from certs.pki.standing import NAMES, Document, Notice, assess

logger = logging.getLogger(__name__)

#: What the operator is told to do about a refusing notice, by document.
_REMEDY: dict[Document, str] = {
    "trust_list": "until a newer trust list is published in pki_dir",
    "crl": "until a newer CRL is published in pki_dir",
    "tls_certificate": "until it is renewed",
    "signing_certificate": "until it is renewed",
}


def explain(notice: Notice) -> str:
    """``notice``'s message and, when it refuses, what the exchange does until when: the
    sentence of an error (whose reason is :attr:`Notice.code`, added where it is printed),
    of a /health notice or an officer's refused result, never with its code in it."""
    if not notice.refusing:
        return notice.message
    return (
        f"{notice.message}: the peer exchange refuses every query and witnessing "
        f"{_REMEDY[notice.document]}"
    )


def log_line(notice: Notice) -> str:
    """The operator's log or warning line of ``notice``: :func:`explain`, ending with its
    code in brackets when it refuses (``[own_stale_crl]``), as an error line ends."""
    if not notice.refusing:
        return explain(notice)
    return f"{explain(notice)} [{notice.code}]"


class PkiWatch:
    """The standing of ``credentials`` (held lists and own certificates, as they are swapped
    by reloads), logged once per change."""

    def __init__(self, credentials: NodeCredentials) -> None:
        self.credentials = credentials
        self._logged: dict[Document, tuple[str, str, dt.datetime | None]] = {}

    def notices(self, now: dt.datetime | None = None) -> list[Notice]:
        return assess(self.credentials, now)

    def refusal(self, now: dt.datetime | None = None) -> Notice | None:
        """The first notice that makes the peer exchange refuse, if any."""
        return next((n for n in self.notices(now) if n.refusing), None)

    def check(self, now: dt.datetime | None = None) -> list[Notice]:
        """Assess, log what changed since the last check, and return the notices."""
        notices = self.notices(now)
        current = {n.document: n for n in notices}
        for document, notice in current.items():
            key = (notice.state, notice.reason, notice.at)
            if self._logged.get(document) != key:
                level = logging.ERROR if notice.refusing else logging.WARNING
                logger.log(level, "%s", log_line(notice))
        for document in sorted(self._logged.keys() - current.keys()):
            logger.info("this node's %s is in order again", NAMES[document])
        self._logged = {d: (n.state, n.reason, n.at) for d, n in current.items()}
        return notices
