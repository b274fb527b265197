"""An officer's query to several peers: local outbound policy first, then the exchange.

:func:`probe_items` turns the officer's input (ISO/IEC 19794-2 records or face template bytes,
or images to extract) into wire :class:`TemplateItem` s, checking every template decodes.
:func:`query_peers` asks the local policy about each peer (every decision is logged with the
case and officer; refused peers, also those with no address in the settings, are reported
without sending anything), sends the probe to the others through the
:class:`Requester` and returns one :class:`OfficerResult` per peer, in the order asked. While
this node's own trust list or CRL is stale, or its own certificate expired or was revoked
(``local``, :meth:`node.exchange.pki_watch.PkiWatch.refusal`), nothing is sent: every peer
the policy allows is refused here with a reason naming this node (``own_stale_crl``...), and
the decision logged says why; the peer is not at fault. A refused peer's decision is logged
with a query id of its own (``query_id``, answered with the result), as the requester logs a
query it sends: the officers' query history lists the attempt (``refused_locally``, its
reason; :mod:`node.services.queries`), though nothing left the node. A refusal's ``detail``
is the sentence of the check its decision failed (:func:`failed_check`), in the result and in
the history alike.

A request naming a country that is no configured peer of this node (no outbound rule, or no
address in the settings: ``unknown_peer``) is refused as a whole, before anything else is
decided and before the node's own PKI documents are looked at (a request error, whatever the
node's state): :class:`UnknownPeerError` (422) names those countries, their decisions are
logged with query ids (the history lists each attempt, ``refused_locally``/``unknown_peer``),
and no peer of the request is asked, so no quota is charged and nothing leaves the node.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread

from certs.pki.standing import Notice
from matcher.errors import MatcherError, TemplateFormatError
from matcher.face.pipeline import extract_face
from matcher.face.template import FaceTemplate
from matcher.fingerprint import iso19794_2
from matcher.fingerprint.extract import extract_file
from node.exchange.messages import MAX_TEMPLATE_BYTES, MIN_TEMPLATE_BYTES, TemplateItem
from node.exchange.pki_watch import explain
from node.exchange.requester import Peer, PeerResult, Requester
from node.exchange.search import decode_fingerprints
from node.service_errors import InvalidRequestError
from policy.decision import Check, Decision, PolicyEngine, Refusal

ISO_FORMAT = "iso19794-2:2005"
ISO_VERSION = 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


#: Leading bytes of the image formats the node reads (PNG, JPEG, TIFF both byte orders, BMP,
#: JPEG 2000, PGM): templates never start so (ISO/IEC 19794-2 records start b"FMR\0").
_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"\x00\x00\x00\x0cjP  ",
    b"P5",
)


def probe_items(
    modality: str, items: Sequence[tuple[bytes, int | None]], *, images: bool
) -> list[TemplateItem]:
    """Wire templates for ``(bytes, finger_position)`` pairs (templates, or images when
    ``images``). Raises the matcher's typed errors for undecodable input."""
    if modality == "face" and len(items) != 1:  # peers refuse it, after charging the quota
        raise MatcherError(
            f"a face query carries one template or image, not {len(items)}", reason="bad_probe"
        )
    out: list[TemplateItem] = []
    for data, position in items:
        if not images and data.startswith(_IMAGE_MAGIC):
            raise TemplateFormatError(
                "this is an image, not a template: send it as an image (bdx query --image, or "
                "the request's images list)",
                reason="image_not_template",
            )
        # Refused before any wire model, whose validation error would quote the bytes (into
        # the node's log, as a 500).
        if not images and len(data) > MAX_TEMPLATE_BYTES:
            raise TemplateFormatError(
                f"a template of {len(data)} bytes; at most {MAX_TEMPLATE_BYTES} are sent",
                reason="template_too_large",
            )
        if not images and len(data) < MIN_TEMPLATE_BYTES:
            raise TemplateFormatError(
                f"a template of {len(data)} bytes is no template", reason="bad_template"
            )
        if modality == "face":
            face = extract_face(data).template if images else FaceTemplate.from_bytes(data)
            out.append(
                TemplateItem(
                    format=face.format,
                    format_version=face.format_version,
                    data=_b64(face.to_bytes()),
                )
            )
            continue
        if images:
            data = iso19794_2.encode(extract_file(data, finger_position=position or 0))
        item = TemplateItem(
            format=ISO_FORMAT, format_version=ISO_VERSION, finger_position=position, data=_b64(data)
        )
        out.append(item)
    if modality == "fingerprint":
        decode_fingerprints(out)  # every record decodes, positions are not repeated
    return out


@dataclass(frozen=True)
class OfficerResult:
    """One peer's result: sent (``sent``) or refused here by the outbound policy."""

    peer: str
    sent: PeerResult | None = None
    refusal: str | None = None
    detail: str | None = None
    #: A refused attempt's id, logged with its decision (the history lists it).
    query_id: str | None = None

    @property
    def answered(self) -> bool:
        return self.sent is not None and self.sent.status == "answered"

    def summary(self) -> dict[str, Any]:
        if self.sent is None:
            out = {"peer": self.peer, "status": "refused_locally", "reason": self.refusal}
            out |= {"query_id": self.query_id} if self.query_id else {}
            return out | ({"detail": self.detail} if self.detail else {})
        pollable = self.sent.status_url is not None
        return {**self.sent.summary(), "reply_jws": self.sent.token, "pollable": pollable}


class UnknownPeerError(InvalidRequestError):
    """A request names countries that are no configured peer of this node: nobody is asked
    (HTTP 422 ``unknown_peer``)."""

    default_reason = Refusal.UNKNOWN_PEER.value


def failed_check(record: Mapping[str, Any]) -> str | None:
    """The sentence of the first check a logged policy decision (``record``, as
    :meth:`~policy.decision.Decision.to_record` makes it) failed: a refused attempt's
    ``detail``, in the ``POST /queries`` result and in the history alike (no probe data: the
    rules' words about the peer, purpose or modality, or this node's own documents)."""
    checks = record.get("checks")
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, Mapping) and check.get("passed") is False:
            detail = check.get("detail")
            return detail if isinstance(detail, str) else None
    return None


async def query_peers(
    requester: Requester,
    policy: PolicyEngine,
    known: dict[str, Peer],
    peers: Sequence[str],
    purpose: str,
    modality: str,
    templates: Sequence[TemplateItem],
    *,
    case_ref: str | None = None,
    officer: str | None = None,
    local: Notice | None = None,
) -> list[OfficerResult]:
    """Decide outbound per peer, query the allowed ones concurrently (see module docstring).
    Raises :class:`UnknownPeerError` when some of ``peers`` is no configured peer (nothing
    sent)."""
    decisions: dict[str, Decision] = {}
    for cc in peers:
        decision = policy.decide_outbound(cc, purpose, modality, datetime.now(UTC))
        if cc not in known and decision.refusal is not Refusal.UNKNOWN_PEER:
            where = Check(
                "address",
                False,
                f"no address for {cc} in this node's settings (peers)",
                Refusal.UNKNOWN_PEER,
            )
            # first: without an address it is no peer, whatever its rules allow
            decision = replace(decision, checks=(where, *decision.checks))
        decisions[cc] = decision
    unknown = [cc for cc, d in decisions.items() if d.refusal is Refusal.UNKNOWN_PEER]
    if unknown:  # the request is refused as a whole: only these attempts are logged
        await _log(requester, [decisions[cc] for cc in unknown], case_ref, officer)
        raise UnknownPeerError(
            f"no peer of this node is {' or '.join(unknown)} (its settings or rules hold no "
            "such peer): nobody was asked; the attempt is in the query history"
        )
    codes: dict[str, str] = {}  # the peers refused for this node's documents, not the policy
    if local is not None:
        own = Check("credentials", False, explain(local))
        for cc in [cc for cc, d in decisions.items() if d.allowed]:
            decisions[cc], codes[cc] = decisions[cc].with_check(own), local.code
    refused = {cc for cc, d in decisions.items() if not d.allowed}
    logged = await _log(requester, list(decisions.values()), case_ref, officer, codes)
    to_send = [known[cc] for cc in peers if cc not in refused]
    sent: dict[str, PeerResult] = {}
    if to_send:
        results = await requester.query_peers(
            to_send, purpose, modality, templates, case_ref=case_ref, officer=officer
        )
        sent = {r.country: r for r in results}
    return [
        OfficerResult(
            cc,
            refusal=logged[cc]["refusal"],
            detail=failed_check(logged[cc]),
            query_id=logged[cc]["query_id"],
        )
        if cc in refused
        else OfficerResult(cc, sent[cc])
        for cc in peers
    ]


async def _log(
    requester: Requester,
    decisions: Sequence[Decision],
    case_ref: str | None,
    officer: str | None,
    codes: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Log ``decisions`` on the exchange log, a refused one (an attempt the history lists,
    module docstring) with a query id of its own and its reason (``codes``' where given: this
    node's own documents); the records, by peer."""
    records: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        record = {**decision.to_record(), "node": requester.country, "case_ref": case_ref}
        if not decision.allowed:
            record["refusal"] = (codes or {}).get(decision.peer) or (
                decision.refusal.value if decision.refusal else "policy"
            )
            record["query_id"] = str(uuid.uuid4())
        records[decision.peer] = {**record, "officer": officer}
    # Off the event loop: the append waits for the log's lock (SQLite's busy wait, PostgreSQL's
    # row lock), and the loop serves the API and the peer listener meanwhile.
    await anyio.to_thread.run_sync(requester.log.record_many, list(records.values()))
    return records
