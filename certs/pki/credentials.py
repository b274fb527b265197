"""One node's PKI material in one object: what the node service loads at start-up.

:class:`NodeCredentials` reads the node's TLS and signing keys/certificates, the pinned root,
the trust list and the CRL, checks that its own certificates validate (so a node with a
revoked, expired or unlisted certificate fails at start, not at its first peer; with
``check=False`` stale documents and refused own certificates are loaded all the same, for a
node or command that must run meanwhile: :mod:`certs.pki.standing` says how they stand, and
every peer's validation still refuses while the documents are stale), and offers:
``server_context()``/``client_context()``/``uvicorn_options()`` for mutual TLS, ``sign()``/
``verify()`` for messages, ``reload()`` to pick up newly published trust list and CRL files
(refused files leave the held ones in place) and ``reload_own()`` to pick up the node's renewed
certificate and key files (:mod:`certs.pki.own`: swapped as one validated pair, or refused).
With ``held_file`` the trust-list sequence and CRL number it holds survive a restart
(:mod:`certs.pki.held`): older files on disk are refused.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from certs import jws
from certs.errors import CertsError
from certs.pki import params
from certs.pki.held import Held, read_held, write_held
from certs.pki.keys import PrivateKey, fingerprint, load_certificate, read_file
from certs.pki.own import OwnFiles, OwnPair, load_own, read_own
from certs.pki.tls import client_context, server_context, uvicorn_ssl_options
from certs.pki.validate import Identity, TrustAnchors


@dataclass(frozen=True)
class NodePaths:
    """Where a node's PKI files live (the layout of ``bdx pki bootstrap`` by default)."""

    root: Path
    trust_list: Path
    crl: Path
    tls_cert: Path
    tls_key: Path
    signing_cert: Path
    signing_key: Path

    @classmethod
    def from_region(cls, region_dir: str | os.PathLike[str], country: str) -> NodePaths:
        """Paths of ``country``'s node in a region folder written by ``bdx pki bootstrap``."""
        base = Path(region_dir)
        node = base / "nodes" / country.lower()
        return cls(
            root=base / "root.pem",
            trust_list=base / "trust-list.jws",
            crl=base / "crl.pem",
            tls_cert=node / "tls.pem",
            tls_key=node / "tls.key",
            signing_cert=node / "signing.pem",
            signing_key=node / "signing.key",
        )


class NodeCredentials:
    """A node's keys, certificates and trust anchors, validated at load."""

    def __init__(
        self,
        paths: NodePaths,
        *,
        passphrase: bytes | None = None,
        grace: dt.timedelta = params.DEFAULT_GRACE,
        now: dt.datetime | None = None,
        held_file: Path | None = None,
        record: bool = True,
        check: bool = True,
    ) -> None:
        self.paths = paths
        self._passphrase = passphrase
        self.held_file = held_file
        self._record = record
        root_fp = fingerprint(load_certificate(paths.root))
        held = read_held(held_file, root_fp) if held_file is not None else None
        self.anchors = TrustAnchors.load(
            paths.root,
            paths.trust_list,
            paths.crl,
            now=now,
            grace=grace,
            min_trust_list_sequence=held.trust_list_sequence if held else None,
            min_crl_number=held.crl_number if held else None,
            check_fresh=check,
        )
        self._remember()
        self._own = load_own(paths, self.anchors, passphrase=passphrase, now=now, check=check)
        tls = self._own.tls_identity
        self._country = tls.country if tls is not None else str(self._own.subject_country)

    @property
    def own(self) -> OwnPair:
        """The node's certificates, keys and TLS contexts in use (one generation)."""
        return self._own

    @property
    def signing_key(self) -> PrivateKey:
        return self._own.signing_key

    @property
    def signing_cert(self) -> x509.Certificate:
        return self._own.signing_cert

    @property
    def tls_cert(self) -> x509.Certificate:
        return self._own.tls_cert

    @property
    def tls_identity(self) -> Identity | None:
        """The TLS certificate as validated (always with ``check``; ``None`` when it was
        refused and loaded with ``check=False``)."""
        return self._own.tls_identity

    @property
    def signing_identity(self) -> Identity | None:
        return self._own.signing_identity

    @property
    def country(self) -> str:
        """This node's country: its validated TLS certificate's (with ``check=False`` and a
        refused certificate, the ``C=`` of its subject)."""
        return self._country

    def server_context(self, *, crl_in_handshake: bool = False) -> ssl.SSLContext:
        """Mutual-TLS server context (see :func:`certs.pki.tls.server_context`): the held
        pair's (shared: do not modify), or with ``crl_in_handshake`` a new one from the files."""
        if not crl_in_handshake:
            return self._own.server
        p = self.paths
        return server_context(
            p.tls_cert, p.tls_key, p.root, passphrase=self._passphrase, crl_file=p.crl
        )

    def client_context(self, *, crl_in_handshake: bool = False) -> ssl.SSLContext:
        """Mutual-TLS client context for ``httpx.Client(verify=...)``: the held pair's
        (shared: do not modify), or with ``crl_in_handshake`` a new one from the files."""
        if not crl_in_handshake:
            return self._own.client
        p = self.paths
        return client_context(
            p.tls_cert, p.tls_key, p.root, passphrase=self._passphrase, crl_file=p.crl
        )

    def reload_own(
        self, *, now: dt.datetime | None = None, files: OwnFiles | None = None
    ) -> OwnPair | None:
        """Re-read the node's own certificate and key files (or take ``files``, as read by the
        caller): a changed pair that validates against the held anchors is swapped in whole
        and returned; unchanged files return None; a refused pair raises and the held one
        stays (see :mod:`certs.pki.own`)."""
        got = files or read_own(self.paths)
        if got == self._own.files:
            return None
        self._own = load_own(
            self.paths,
            self.anchors,
            passphrase=self._passphrase,
            now=now,
            country=self.country,
            files=got,
        )
        return self._own

    def uvicorn_options(self) -> dict[str, Any]:
        """``uvicorn.Config`` keyword arguments; add ``http=PeerCertH11Protocol``."""
        p = self.paths
        secret = self._passphrase.decode() if self._passphrase else None
        return uvicorn_ssl_options(p.tls_cert, p.tls_key, p.root, passphrase=secret)

    def sign(self, payload: dict[str, Any], *, typ: str = params.MESSAGE_TYP) -> str:
        """Sign ``payload`` (``v``, ``sender`` = this node's country) as a compact JWS."""
        own = self._own
        return jws.sign(payload, own.signing_key, [own.signing_cert], typ=typ)

    def verify(
        self,
        token: str | bytes,
        *,
        expected_country: str | None = None,
        typ: str = params.MESSAGE_TYP,
        now: dt.datetime | None = None,
    ) -> jws.VerifiedMessage:
        """Verify a peer's message against this node's trust anchors."""
        return jws.verify(token, self.anchors, expected_country=expected_country, typ=typ, now=now)

    def reload(self, *, now: dt.datetime | None = None) -> tuple[int, int]:
        """Re-read the trust list and CRL files; return the held (sequence, CRL number).

        Unchanged files are a no-op; newer ones are verified and swapped in; older, stale or
        forged ones raise and leave the held documents in place. Each file is tried whatever
        became of the other: a refused trust list must not keep a published revocation out.
        """
        refused: list[CertsError] = []
        try:
            for step in (self._reload_trust_list, self._reload_crl):
                try:
                    step(now)
                except CertsError as exc:
                    refused.append(exc)
        finally:
            self._remember()  # what was accepted is held, whatever was refused
        if refused:
            raise refused[0]
        return self.anchors.trust_list.sequence, self.anchors.crl.number

    def _reload_trust_list(self, now: dt.datetime | None) -> None:
        tl = read_file(self.paths.trust_list, max_bytes=params.MAX_TRUST_LIST_FILE_BYTES).strip()
        if tl != self.anchors.trust_list.raw:
            self.anchors.refresh_trust_list(tl, now=now)

    def _reload_crl(self, now: dt.datetime | None) -> None:
        crl = read_file(self.paths.crl)
        if crl != self.anchors.crl.raw:
            self.anchors.refresh_crl(crl, now=now)

    def _remember(self) -> None:
        """Record the held trust-list sequence and CRL number (``held_file``), so that a
        restart refuses anything older (:mod:`certs.pki.held`). Not with ``record=False``: a
        reader (a command run by another user) enforces the held file but leaves it to the
        node, whose own later reload records what it accepts."""
        if self.held_file is None or not self._record:
            return
        held = Held(
            fingerprint(self.anchors.root),
            self.anchors.trust_list.sequence,
            self.anchors.crl.number,
        )
        if read_held(self.held_file, held.root) != held:
            write_held(self.held_file, held)
