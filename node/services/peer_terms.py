"""Asking a peer for its terms (``GET /peers/{country}/terms``), recorded in the audit trail.

The peer's signed terms are fetched and verified by :func:`node.exchange.terms.fetch_terms`.
A country that is no configured peer of this node (no outbound rule, or no address in the
settings) is refused before anything is sent, as ``POST /queries`` refuses it
(:class:`~node.exchange.officer.UnknownPeerError`, 422 ``unknown_peer``); so is every country
while this node's own trust list, CRL or certificates are refused (503, their code): the peer
would refuse this node's certificate. A peer that cannot be asked, or whose answer does not
verify, is a :class:`~node.errors.PeerError` (502) whose reason is the requester's word for it
(``unreachable``, ``timeout``, ``untrusted_peer``, ``http_error``, ``invalid_reply``; a
verification failure's own reason, ``bad_signature``, ``nonce_mismatch``, ``stale_message``...,
in its message).

Every reading that went out to a peer is recorded in the audit trail as
:data:`TERMS_READ_ACTION` (the reader, the peer as target, the status and, when answered, the
peer's rules version, which it gives with terms only, and whether it grants terms), as each
reading of this node's own quota
standings is (``quota.show``): what the reader learned of a quota, and that this node asked a
peer under its certificate.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from certs.errors import CertsError
from node.errors import PeerError
from node.exchange.officer import UnknownPeerError
from node.exchange.pki_watch import explain
from node.exchange.replay import ReplayError
from node.exchange.requester import Peer
from node.exchange.setup import Exchange
from node.exchange.terms import PeerTerms, fetch_terms
from node.repositories.audit import AuditRepository
from node.service_errors import StoreUnavailableError

#: The audit action of a reading of a peer's terms.
TERMS_READ_ACTION = "peer.terms"


class PeerTermsService:
    def __init__(self, session: Session, exchange: Exchange) -> None:
        self.session = session
        self.exchange = exchange

    def _peer(self, country: str) -> Peer:
        peer = self.exchange.peers.get(country)
        if peer is None or country not in self.exchange.policy.policy.outbound:
            raise UnknownPeerError(
                f"no peer of this node is {country} (its settings or rules hold no such "
                "peer): nobody was asked"
            )
        return peer

    async def read(self, country: str, *, actor: str) -> PeerTerms:
        """``country``'s verified terms for this node (see the module docstring)."""
        peer = self._peer(country)
        notice = await anyio.to_thread.run_sync(self.exchange.pki_watch.refusal)
        if notice is not None:
            raise StoreUnavailableError(explain(notice), reason=notice.code)
        try:
            terms = await fetch_terms(self.exchange.requester, peer)
        except PeerError as exc:
            await self._record(actor, country, {"status": exc.reason})
            raise
        except (CertsError, ReplayError) as exc:
            refused = {"status": "invalid_reply", "refused": exc.reason}
            await self._record(actor, country, refused)
            raise PeerError(
                f"{country}'s terms do not verify ({exc.reason})",
                reason="invalid_reply",
            ) from None
        payload = terms.payload
        details: dict[str, Any] = {"status": "answered", "granted": payload.terms is not None}
        if payload.policy_version is not None:  # none without terms: the peer tells no more
            details["policy_version"] = payload.policy_version
        await self._record(actor, country, details)
        return terms

    async def _record(self, actor: str, country: str, details: dict[str, Any]) -> None:
        def write() -> None:
            AuditRepository(self.session).record(actor, TERMS_READ_ACTION, country, details)
            self.session.commit()

        await anyio.to_thread.run_sync(write)
