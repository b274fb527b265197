"""Mutual TLS between peer nodes with the region's certificates.

- :func:`server_context` / :func:`client_context`: ``ssl.SSLContext`` objects (TLS 1.2+, 1.3
  preferred, ECDHE AEAD suites on 1.2) that require and verify the peer's certificate against
  the pinned root; optionally also against a CRL file (OpenSSL then refuses revoked leaves in
  the handshake).
- :func:`uvicorn_ssl_options`: the same for ``uvicorn.run(**options)``.
- :func:`peer_identity` / :func:`peer_country`: the application-level check of the peer's
  certificate (DER, from ``ssl_object.getpeercert(binary_form=True)``) against the trust list
  and the CRL the node holds now (refreshable without rebuilding the contexts).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from typing import Any

from certs.pki import reasons
from certs.pki.errors import CertificateRefused
from certs.pki.profiles import Usage
from certs.pki.validate import Identity, TrustAnchors

PathLike = str | os.PathLike[str]
# TLS 1.2 suites: forward secrecy (ECDHE) with AEAD only; TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _context(
    purpose: int,
    cert_file: PathLike,
    key_file: PathLike,
    root_file: PathLike,
    passphrase: bytes | None,
    crl_file: PathLike | None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=os.fspath(root_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if crl_file is not None:
        ctx.load_verify_locations(cafile=os.fspath(crl_file))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file), password=passphrase)
    return ctx


def server_context(
    cert_file: PathLike,
    key_file: PathLike,
    root_file: PathLike,
    *,
    passphrase: bytes | None = None,
    crl_file: PathLike | None = None,
) -> ssl.SSLContext:
    """Server side: present the node's TLS certificate, require a client certificate."""
    return _context(ssl.PROTOCOL_TLS_SERVER, cert_file, key_file, root_file, passphrase, crl_file)


def client_context(
    cert_file: PathLike,
    key_file: PathLike,
    root_file: PathLike,
    *,
    passphrase: bytes | None = None,
    crl_file: PathLike | None = None,
) -> ssl.SSLContext:
    """Client side (e.g. ``httpx.Client(verify=ctx)``): verify the server and its host name."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, cert_file, key_file, root_file, passphrase, crl_file)
    ctx.check_hostname = True
    return ctx


def uvicorn_ssl_options(
    cert_file: PathLike, key_file: PathLike, root_file: PathLike, *, passphrase: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` to serve mutual TLS."""
    return {
        "ssl_certfile": os.fspath(cert_file),
        "ssl_keyfile": os.fspath(key_file),
        "ssl_keyfile_password": passphrase,
        "ssl_ca_certs": os.fspath(root_file),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ciphers": TLS12_CIPHERS,
    }


def peer_identity(
    der: bytes | None,
    anchors: TrustAnchors,
    *,
    expected_country: str | None = None,
    now: dt.datetime | None = None,
) -> Identity:
    """Validate the peer's TLS certificate (DER) and return its identity (country, node)."""
    if not der:
        raise CertificateRefused("the peer presented no certificate", reason=reasons.NO_CERTIFICATE)
    return anchors.validate(der, Usage.TLS, expected_country=expected_country, now=now)


def peer_country(
    der: bytes | None, anchors: TrustAnchors, *, now: dt.datetime | None = None
) -> str:
    """The country code of a validated peer TLS certificate (DER)."""
    return peer_identity(der, anchors, now=now).country
