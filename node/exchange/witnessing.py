"""Witnessing between peers: each node countersigns its peers' exchange-log checkpoints.

A node cannot rewrite its history unnoticed, even by its own operators, because its peers keep
what they cosigned: a witness cosigns a checkpoint only when the log signed it and a
consistency proof links it to the last checkpoint that witness cosigned for the same log
(:class:`certs.translog.Witness`); a shorter tree, another root for the same size or a failing
proof is refused, and the refusal is evidence of a rewritten or split history.

Protocol, on the mutual-TLS peer listener (the TLS client certificate names the caller):

``GET /peer/v1/witness/latest``
    ``{"origin": ..., "size": n}``: the size this node last cosigned for the caller's log
    (0 when none), so the caller knows which consistency proof to send.
``POST /peer/v1/witness``
    ``{"checkpoint": <signed note>, "proof": [base64 hashes], "old_size": n}`` (``old_size``:
    the size the proof starts from; another than the witness's latest is ``stale_proof``,
    409, not a fork) →
    ``{"witness", "key_id", "timestamp", "signature"}`` (a c2sp.org/tlog-cosignature).

The caller's log key is the public key of its *signing* certificate in the trust list (of
either of its two while it renews them: the one whose key id the note carries), and the
checkpoint's origin must be the caller's log (``bdx.<cc>/exchange-log``): a node can only ask
for its own log to be witnessed. The witness signs with its own signing key under the name
``bdx.<cc>/witness``. :func:`witness_round` is the caller's side, run after each checkpoint;
it sends only to a server whose TLS certificate validates for the peer's country, as queries
do (:func:`node.exchange.requester.server_check`).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import httpx
from sqlalchemy import Engine

from certs.errors import CertsError
from certs.pki.credentials import NodeCredentials
from certs.pki.profiles import Usage
from certs.pki.validate import TrustAnchors
from certs.translog import (
    Checkpoint,
    Cosignature,
    RollbackError,
    SignedCheckpoint,
    SigningKey,
    SplitViewError,
    TransparencyLog,
    VerifyingKey,
    Witness,
)
from certs.translog.keys import PublicKey
from certs.translog.witness import log_signed
from node.errors import NotFoundError
from node.exchange.requester import (
    Peer,
    UntrustedPeerError,
    bounded_request,
    refused_certificate,
    server_check,
)
from node.exchange.responder import ExchangeLog
from node.service_errors import InvalidRequestError

logger = logging.getLogger(__name__)

WITNESS_PATH = "/peer/v1/witness"
#: ``GET {VIEWS_PATH}/{cc}``: the latest checkpoint of ``cc``'s log this node cosigned.
VIEWS_PATH = WITNESS_PATH + "/views"
#: ``GET {PROOF_PATH}?old=m&new=n``: a consistency proof of this node's own log.
PROOF_PATH = "/peer/v1/log/consistency"


def log_origin(country: str) -> str:
    """The origin (key name) of a node's exchange log, e.g. ``bdx.th/exchange-log``."""
    return f"bdx.{country.lower()}/exchange-log"


def witness_name(country: str) -> str:
    return f"bdx.{country.lower()}/witness"


def _signing_keys_of(anchors: TrustAnchors, country: str) -> list[PublicKey]:
    """``country``'s signing keys whose certificates validate now (in date, unrevoked), newest
    first: two while it renews them. A revoked key's checkpoints are not cosigned, nor are its
    cosignatures counted, as its messages are refused (raises
    :class:`~certs.errors.CertsError` when no listed key validates)."""
    member = anchors.trust_list.member(country)
    if member is None:
        raise NotFoundError(f"{country} is not in the trust list", reason="not_in_trust_list")
    keys: list[PublicKey] = []
    refused: CertsError | None = None
    for cert in reversed(member.signing):
        try:
            anchors.validate(cert, Usage.SIGNING, expected_country=country)
        except CertsError as exc:
            refused = refused or exc
            continue
        keys.append(cert.public_key())  # type: ignore[arg-type]  # ECDSA P-256 keys only
    if not keys:
        assert refused is not None  # a member lists at least one signing certificate
        raise refused
    return keys


def peer_log_keys(anchors: TrustAnchors, country: str) -> list[VerifyingKey]:
    """The keys that verify ``country``'s log checkpoints (its signing certificates'),
    newest first."""
    return [VerifyingKey(log_origin(country), k) for k in _signing_keys_of(anchors, country)]


def peer_witness_keys(anchors: TrustAnchors, country: str) -> list[VerifyingKey]:
    """The keys that verify ``country``'s cosignatures (its signing certificates'), newest
    first."""
    return [VerifyingKey(witness_name(country), k) for k in _signing_keys_of(anchors, country)]


def peer_log_key(anchors: TrustAnchors, country: str) -> VerifyingKey:
    """The key of ``country``'s newest valid signing certificate, for its log checkpoints."""
    return peer_log_keys(anchors, country)[0]


def peer_witness_key(anchors: TrustAnchors, country: str) -> VerifyingKey:
    """The key of ``country``'s newest valid signing certificate, for its cosignatures."""
    return peer_witness_keys(anchors, country)[0]


def _signer(keys: Sequence[VerifyingKey], note: SignedCheckpoint) -> VerifyingKey:
    """Of ``keys`` (one member's, during a renewal two), the one whose signature line
    ``note`` carries; the newest when none (its verification then fails as unsigned)."""
    ids = {s.key_id for s in note.note.signatures if s.name == keys[0].name}
    return next((k for k in keys if k.key_id() in ids), keys[0])


def _cosigner(keys: Sequence[VerifyingKey], cosignature: Cosignature) -> VerifyingKey:
    """Of ``keys``, the one ``cosignature`` names by its key id (the newest when none)."""
    return next((k for k in keys if k.key_id("cosignature") == cosignature.key_id), keys[0])


#: Distinct presented checkpoints kept as evidence against one checkpoint this node holds
#: for a peer log (per other witness for a split view), for each of two kinds: those with
#: another root at a size this witness cosigned (a fork, proven by two signed roots) and those
#: it cannot tie to its history (another size, a failing proof). A peer signs any number of
#: random roots for free and each event keeps two notes in this node's append-only log; 16
#: trees a log signed against one history already prove it forks (or lies in its proofs), so
#: the ones beyond are only counted (one WARNING line, then DEBUG). The two kinds are bounded
#: apart so that honest checkpoints sent with wrong proofs cannot use up the room of forks.
EVIDENCE_PER_HELD = 16


@dataclass
class _Kept:
    """The evidence kept against one held checkpoint: the presented (size, root) of each
    kind, and the refusals not kept (repeats of one kept, and those beyond the bound)."""

    held: str
    trees: dict[str, set[tuple[int, bytes]]] = field(default_factory=dict)
    repeats: int = 0
    over: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WitnessService:
    """This node's witness of its peers' logs (state in the node database). A refusal that
    is evidence against a peer's log (a rollback, a split view) is logged at ERROR and, with
    ``events``, appended to this node's own exchange log with both signed notes: the
    refusing witness keeps the evidence, not only the node that tampered.

    A presented checkpoint this witness cosigned before (its size and root), e.g. an old one
    sent again, is refused as before but is evidence of nothing: it is logged at DEBUG only.
    Any other is kept once per peer log (and other witness, for a split view), checkpoint
    this node holds and presented tree (size and root), up to ``EVIDENCE_PER_HELD`` trees of
    each kind per held checkpoint (a peer can sign any number for free); repeats are logged
    at DEBUG and counted, and so are trees beyond the bound after one WARNING line. The notes
    kept carry the checkpoint body and the log's verified signature only
    (:func:`~certs.translog.witness.log_signed`), never the lines a presenter added."""

    witness: Witness
    anchors: TrustAnchors
    country: str = ""
    events: ExchangeLog | None = None
    #: per (event type, peer[, witness]): the evidence kept against the held checkpoint (a
    #: few entries per peer of at most 2 x EVIDENCE_PER_HELD trees: the held checkpoint only
    #: moves forward, replacing the entry).
    _kept: dict[tuple[str, ...], _Kept] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _kept_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @classmethod
    def create(
        cls, engine: Engine, credentials: NodeCredentials, events: ExchangeLog | None = None
    ) -> WitnessService:
        key = SigningKey(witness_name(credentials.country), credentials.signing_key)
        return cls(Witness(engine, key), credentials.anchors, credentials.country, events)

    def latest_size(self, peer: str) -> int:
        latest = self.witness.latest(log_origin(peer))
        return latest.checkpoint.size if latest is not None else 0

    def _is_evidence(
        self, scope: tuple[str, ...], held: str, presented: Checkpoint, what: str
    ) -> str | None:
        """Whether the refusal of ``presented`` (``what``: for the log lines) against the held
        checkpoint body ``held`` is new evidence to keep: its kind (now marked kept), else
        None, logged at DEBUG (or WARNING, the first beyond the bound)."""
        roots = self.witness.roots_at(presented.origin, presented.size)
        if presented.root_hash in roots:
            logger.debug("%s: a checkpoint this node cosigned, no evidence", what)
            return None
        kind = "conflict" if roots else "untied"
        tree = (presented.size, presented.root_hash)
        with self._kept_lock:
            entry = self._kept.get(scope)
            if entry is None or entry.held != held:
                entry = self._kept[scope] = _Kept(held)
            trees = entry.trees.setdefault(kind, set())
            if tree in trees:
                entry.repeats += 1
                logger.debug("%s again (kept already; %d repeats)", what, entry.repeats)
                return None
            if len(trees) >= EVIDENCE_PER_HELD:
                over = entry.over[kind] = entry.over.get(kind, 0) + 1
                level = logging.WARNING if over == 1 else logging.DEBUG
                logger.log(
                    level,
                    "%s: not kept, %d trees of the kind kept already against this checkpoint "
                    "(%d not kept)",
                    what,
                    EVIDENCE_PER_HELD,
                    over,
                )
                return None
            trees.add(tree)
            return kind

    def _unmark(self, scope: tuple[str, ...], held: str, kind: str, presented: Checkpoint) -> None:
        """Forget that ``presented`` was kept (its event could not be appended: the next one
        is)."""
        with self._kept_lock:
            entry = self._kept.get(scope)
            if entry is not None and entry.held == held:
                entry.trees.get(kind, set()).discard((presented.size, presented.root_hash))

    def _record(
        self,
        scope: tuple[str, ...],
        held: str,
        kind: str,
        presented: Checkpoint,
        event: dict[str, Any],
    ) -> None:
        if self.events is None:
            return
        try:
            self.events.record(event)
        except BaseException:
            self._unmark(scope, held, kind, presented)
            raise

    def view(self, peer: str) -> SignedCheckpoint | None:
        """The latest checkpoint of ``peer``'s log this node cosigned, if any."""
        return self.witness.latest(log_origin(peer))

    def compare(
        self, peer: str, witness: str, mine: SignedCheckpoint, theirs: bytes, proof: list[bytes]
    ) -> None:
        """Check that ``theirs`` (what ``witness`` cosigned for ``peer``'s log) and ``mine``
        can be one history (``proof``: the log's, between their sizes). A split view is
        logged at ERROR and, with ``events``, appended to this node's exchange log with both
        signed notes (once per peer, witness, checkpoint held and tree presented, see the
        class); then :class:`SplitViewError` is raised."""
        presented = SignedCheckpoint.from_bytes(theirs)
        try:
            key = _signer(peer_log_keys(self.anchors, peer), presented)
            self.witness.check_peer_view(theirs, key, proof, mine)
        except SplitViewError as exc:
            # ``presented`` verified under ``key`` before the views were compared
            scope, held = ("split_view", peer, witness), mine.note.text
            what = (
                f"{peer}'s log showed {witness} size {presented.checkpoint.size} against "
                f"size {mine.checkpoint.size} held here [{exc.reason}]"
            )
            kind = self._is_evidence(scope, held, presented.checkpoint, what)
            if kind is None:
                raise
            logger.error(
                "%s's log showed %s another history than this node cosigned: %s [%s]",
                peer,
                witness,
                exc.message,
                exc.reason,
            )
            event = {
                "type": "split_view",
                "node": self.country,
                "peer": peer,
                "witness": witness,
                "reason": exc.reason,
                "held": log_signed(mine).to_bytes().decode(),
                "presented": log_signed(presented, key).to_bytes().decode(),
                "at": datetime.now(UTC).isoformat(),
            }
            self._record(scope, held, kind, presented.checkpoint, event)
            raise

    def cosign(
        self, peer: str, checkpoint: str, proof: Sequence[str], old_size: int | None = None
    ) -> Cosignature:
        """Cosign ``peer``'s checkpoint (``proof`` from ``old_size``, when the peer says it);
        raises a typed error when it must not be cosigned."""
        try:
            raw = checkpoint.encode("utf-8")
            signed = SignedCheckpoint.from_bytes(raw)
            hashes = [base64.b64decode(p, validate=True) for p in proof]
        except (ValueError, UnicodeError) as exc:
            raise InvalidRequestError(
                f"malformed witness request: {exc}", reason="malformed_checkpoint"
            ) from None
        if signed.checkpoint.origin != log_origin(peer):
            raise InvalidRequestError(
                f"{peer} may only ask to witness its own log, not {signed.checkpoint.origin}",
                reason="wrong_origin",
            )
        key = _signer(peer_log_keys(self.anchors, peer), signed)
        try:
            return self.witness.cosign(raw, key, hashes, old_size)
        except (RollbackError, SplitViewError) as exc:
            # refused after ``signed`` verified under ``key``: its log line is evidence
            self._keep_evidence(peer, log_signed(signed, key), exc)
            raise

    def _keep_evidence(
        self, peer: str, presented: SignedCheckpoint, exc: RollbackError | SplitViewError
    ) -> None:
        held = self.witness.latest(presented.checkpoint.origin)  # the log's line only
        scope = ("witness_refusal", peer)
        held_text = held.note.text if held is not None else ""
        held_size = held.checkpoint.size if held is not None else "none"
        what = (
            f"{peer}'s log presented size {presented.checkpoint.size} against size "
            f"{held_size} held here [{exc.reason}]"
        )
        kind = self._is_evidence(scope, held_text, presented.checkpoint, what)
        if kind is None:
            return
        logger.error(
            "%s's log presented size %d, inconsistent with size %s this node cosigned: %s [%s]",
            peer,
            presented.checkpoint.size,
            held_size,
            exc.message,
            exc.reason,
        )
        event = {
            "type": "witness_refusal",
            "node": self.country,
            "peer": peer,
            "reason": exc.reason,
            "presented": presented.to_bytes().decode(),
            "held": held.to_bytes().decode() if held is not None else None,
            "at": datetime.now(UTC).isoformat(),
        }
        self._record(scope, held_text, kind, presented.checkpoint, event)


def cosignature_json(c: Cosignature) -> dict[str, object]:
    return {
        "witness": c.witness,
        "key_id": base64.b64encode(c.key_id).decode(),
        "timestamp": c.timestamp,
        "signature": base64.b64encode(c.signature).decode(),
    }


def cosignature_from_json(data: object) -> Cosignature:
    if not isinstance(data, dict):
        raise ValueError("a cosignature is a JSON object")
    return Cosignature(
        str(data["witness"]),
        base64.b64decode(str(data["key_id"]), validate=True),
        int(data["timestamp"]),
        base64.b64decode(str(data["signature"]), validate=True),
    )


async def witness_round(
    log: TransparencyLog, credentials: NodeCredentials, peers: Sequence[Peer], timeout: float
) -> dict[str, str]:
    """Ask every peer to cosign this node's latest checkpoint; store what comes back.

    Returns ``{peer: "cosigned" | reason}``. A refusal is logged and reported, never fatal:
    the next round retries.
    """
    latest = await anyio.to_thread.run_sync(log.latest_checkpoint)
    if latest is None:
        return {}
    size = latest.checkpoint.size
    out: dict[str, str] = {}
    done = {c.witness for c in latest.cosignatures()}  # verified when stored
    async with httpx.AsyncClient(verify=credentials.client_context(), timeout=timeout) as client:
        for peer in peers:
            if witness_name(peer.country) in done:  # each round would add a row at the peer
                out[peer.country] = "cosigned"
                continue
            base = peer.url.rstrip("/")
            # the peer's server certificate, checked as for queries (requester.server_check)
            check = {"trace": server_check(credentials.anchors, peer.country)}
            try:
                with anyio.fail_after(timeout):  # a peer trickling its answer is cut off
                    latest_url = httpx.URL(base + WITNESS_PATH + "/latest")
                    r = await bounded_request(client, "GET", latest_url, extensions=check)
                    r.raise_for_status()
                    old = _witnessed_size(r.json())
                    proof: list[bytes] = []
                    if 0 < old < size:
                        proof = await anyio.to_thread.run_sync(log.consistency_proof, old, size)
                    body = {
                        "checkpoint": latest.to_bytes().decode("utf-8"),
                        "proof": [base64.b64encode(h).decode() for h in proof],
                        "old_size": old,
                    }
                    r = await bounded_request(
                        client, "POST", httpx.URL(base + WITNESS_PATH), json=body, extensions=check
                    )
                if r.status_code != 200:
                    refusal = r.json()
                    code = refusal.get("error") if isinstance(refusal, dict) else None
                    # the peer's word goes into this node's log: a code, never free text (a
                    # newline and escapes forged an ERROR line like this node's own alarm)
                    reason = (
                        code
                        if isinstance(code, str) and _ERROR_CODE.fullmatch(code)
                        else f"http_{r.status_code}"
                    )
                    logger.warning(
                        "%s refused to cosign checkpoint %d: %s", peer.country, size, reason
                    )
                    out[peer.country] = str(reason)
                    continue
                cosig = cosignature_from_json(r.json())
                key = _cosigner(peer_witness_keys(credentials.anchors, peer.country), cosig)
                await anyio.to_thread.run_sync(log.add_cosignature, latest.checkpoint, cosig, key)
                out[peer.country] = "cosigned"
            except UntrustedPeerError as exc:
                logger.warning(
                    "witnessing by %s: %s", peer.country, refused_certificate(exc.reason)
                )
                out[peer.country] = f"untrusted_peer: {exc.reason}"
            except (httpx.HTTPError, ValueError, KeyError, CertsError) as exc:
                logger.warning("witnessing by %s failed: %s", peer.country, exc)
                out[peer.country] = getattr(exc, "reason", type(exc).__name__)
            except Exception as exc:  # a peer's odd answer must not cost the later peers
                logger.warning("witnessing by %s failed: %s", peer.country, type(exc).__name__)
                out[peer.country] = getattr(exc, "reason", type(exc).__name__)
    return out


_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
#: Largest signed note and proof read from a peer (a note is a few hundred bytes with its
#: signatures; a consistency proof of any 63-bit tree has at most 2 x 63 hashes).
MAX_NOTE_CHARS = 8192
MAX_PROOF_HASHES = 128


def _witnessed_size(body: object) -> int:
    """The size a witness says it cosigned (``GET .../latest``); ValueError when malformed."""
    size = body.get("size") if isinstance(body, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**63:
        raise ValueError(f"witness head size {size!r} is not a tree size")
    return size


async def compare_views(
    service: WitnessService, credentials: NodeCredentials, peers: Sequence[Peer], timeout: float
) -> dict[str, str]:
    """Compare what this node cosigned for each peer's log with what the other peers cosigned.

    A log that shows its witnesses different histories (a split view) passes every witness's
    own checks; only comparing their views catches it. For each peer log this node cosigned,
    every other peer is asked for its view (``VIEWS_PATH``); when the sizes differ, the log
    itself is asked for the consistency proof between them (``PROOF_PATH``). Each pair has
    ``timeout`` seconds in all and answers of at most ``MAX_REPLY_BYTES``. Returns
    ``{"<log>/<witness>": "consistent" | "split_view" | reason}``; only a split view is an
    alarm (see :meth:`WitnessService.compare`), anything else is logged and retried later.
    """
    by_country = {p.country: p for p in peers}
    out: dict[str, str] = {}
    async with httpx.AsyncClient(verify=credentials.client_context(), timeout=timeout) as client:

        async def get(cc: str, path: str, **params: int) -> httpx.Response:
            check = {"trace": server_check(credentials.anchors, cc)}
            url = httpx.URL(by_country[cc].url.rstrip("/") + path, params=params)
            return await bounded_request(client, "GET", url, extensions=check)

        for cc in sorted(by_country):
            mine = await anyio.to_thread.run_sync(service.view, cc)
            if mine is None:
                continue
            for other in sorted(set(by_country) - {cc}):
                key = f"{cc}/{other}"
                try:
                    with anyio.fail_after(timeout):  # a peer trickling its answer is cut off
                        r = await get(other, f"{VIEWS_PATH}/{cc}")
                        if r.status_code == 404:  # it has cosigned nothing of that log yet
                            out[key] = "no_view"
                            continue
                        r.raise_for_status()
                        theirs = _view_note(r.json())
                        small, large = sorted((mine.checkpoint.size, _size_of(theirs)))
                        proof: list[bytes] = []
                        if small < large:
                            r = await get(cc, PROOF_PATH, old=small, new=large)
                            r.raise_for_status()
                            proof = _proof_hashes(r.json())
                    await anyio.to_thread.run_sync(service.compare, cc, other, mine, theirs, proof)
                    out[key] = "consistent"
                except SplitViewError:
                    out[key] = "split_view"
                except UntrustedPeerError as exc:
                    logger.warning(
                        "comparing views of %s at %s: %s",
                        cc,
                        other,
                        refused_certificate(exc.reason),
                    )
                    out[key] = f"untrusted_peer: {exc.reason}"
                except Exception as exc:  # one peer's odd answer must not cost the others
                    logger.warning(
                        "comparing views of %s's log at %s failed: %s",
                        cc,
                        other,
                        getattr(exc, "reason", type(exc).__name__),
                    )
                    out[key] = str(getattr(exc, "reason", type(exc).__name__))
    return out


def _view_note(body: object) -> bytes:
    """The signed note of a ``VIEWS_PATH`` answer; ValueError when malformed."""
    note = body.get("checkpoint") if isinstance(body, dict) else None
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise ValueError("a witness view is {'checkpoint': <signed note>}")
    return note.encode("utf-8")


def _size_of(note: bytes) -> int:
    return SignedCheckpoint.from_bytes(note).checkpoint.size


def _proof_hashes(body: object) -> list[bytes]:
    """The hashes of a ``PROOF_PATH`` answer; ValueError when malformed."""
    proof = body.get("proof") if isinstance(body, dict) else None
    if not isinstance(proof, list) or len(proof) > MAX_PROOF_HASHES:
        raise ValueError("a consistency proof is {'proof': [base64 hashes]}")
    return [base64.b64decode(str(h), validate=True) for h in proof]
