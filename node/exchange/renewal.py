"""A running node picks up its renewed certificates and keys (no restart, no outage).

Each housekeeping round, after the trust list and CRL, :meth:`OwnCertificates.check` re-reads
the node's own TLS and signing files. A changed pair that validates against the held trust
anchors (each key its certificate's, both certificates listed, unrevoked, in date, this
node's country) is swapped in everywhere in the same step: the peer listener's new handshakes
(:mod:`node.exchange.serving` asks :meth:`NodeCredentials.server_context` at each one), the
outbound client (pooled connections replaced), and the signatures of replies, queries,
checkpoints and cosignatures. The exchange log records the new log key (``log-keys.txt``) and
issues a checkpoint signed with it. The change is logged at INFO with the new certificates'
serials and fingerprints. A pair that does not validate is refused with one ERROR line (once
per refused files and held trust list and CRL) and the pair in use stays.

Whether the held trust list and CRL still accept the pair in use (e.g. a trust list published
without this node's certificates: peers then refuse this node) is the standing watch's to say
(:mod:`node.exchange.pki_watch`), one ERROR per certificate; this module said it too, so each
such change was two or three ERROR lines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from certs.errors import CertsError
from certs.pki.credentials import NodeCredentials
from certs.pki.own import OwnFiles, OwnPair, read_own
from certs.translog import SigningKey, TransparencyLog, VerifyingKey
from node.exchange.requester import Requester
from node.exchange.responder import Responder
from node.exchange.witnessing import WitnessService, log_origin, witness_name

logger = logging.getLogger(__name__)


@dataclass
class OwnCertificates:
    """The node's parts that use its own certificates and keys, kept on one pair."""

    credentials: NodeCredentials
    responder: Responder
    requester: Requester
    log: TransparencyLog
    witness: WitnessService
    record_log_key: Callable[[VerifyingKey], object]  # appends to log-keys.txt
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _refused: tuple[object, ...] | None = field(default=None, repr=False)

    def check(self) -> OwnPair | None:
        """One round (see the module docstring); the new pair when one was swapped in."""
        with self._lock:  # a round at a time: one swap, one line per change
            return self._reload()

    def _anchors(self) -> tuple[int, int]:
        anchors = self.credentials.anchors
        return anchors.trust_list.sequence, anchors.crl.number

    def _reload(self) -> OwnPair | None:
        creds = self.credentials
        files: OwnFiles | None = None
        try:
            files = read_own(creds.paths)
            pair = creds.reload_own(files=files)
        except CertsError as exc:
            state = (files, exc.reason, *self._anchors())
            if state != self._refused:  # the same refusal again is not logged again
                self._refused = state
                logger.error(
                    "renewed certificates refused, the ones in use stay: %s [%s]",
                    exc.message,
                    exc.reason,
                )
            return None
        self._refused = None
        if pair is not None:
            self._use(pair)
        return pair

    def _use(self, pair: OwnPair) -> None:
        country = self.credentials.country
        key, chain = pair.signing_key, [pair.signing_cert]
        self.responder.use_signing(key, chain)
        self.requester.use_credentials(key, chain, pair.client)
        self.witness.witness.use_key(SigningKey(witness_name(country), key))
        log_key = SigningKey(log_origin(country), key)
        self.log.use_key(log_key)
        logger.info("renewed certificates in use: %s", pair.summary())
        try:  # the store audit verifies the checkpoints of every key the log had
            self.record_log_key(log_key.verifying_key())
        except Exception:
            logger.exception("the renewed log key was not recorded")
        try:  # the latest checkpoint, the one witnesses are asked for, under the new key
            self.log.issue_checkpoint()
        except Exception:  # the housekeeping issues one later
            logger.exception("no checkpoint under the renewed log key")
