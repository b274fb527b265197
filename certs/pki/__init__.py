"""The regional PKI: root CA, node certificates (TLS and signing), trust list, CRL, validation.

Public API (see each module's docstring):

- :class:`CertificateAuthority` (``ca``): create/open a CA directory, ``issue``, ``revoke``,
  ``crl``, ``trust_list``.
- :class:`CsrBuilder`, :class:`RootCaBuilder`, :class:`NodeCertificateBuilder` (``builders``).
- :class:`TrustAnchors` (``validate``): pinned root + trust list + CRL; ``validate`` returns an
  :class:`Identity` or raises :class:`CertificateRefused`; ``refresh_trust_list``/``refresh_crl``.
- ``tls``: ``server_context``, ``client_context``, ``uvicorn_ssl_options``, ``peer_identity``,
  ``peer_country``.
- ``credentials``: :class:`~certs.pki.credentials.NodeCredentials`, everything a node service
  needs in one object (mTLS contexts, uvicorn options, sign/verify, reload, reload_own);
  ``own``: the node's own certificates and keys, validated and swapped as one pair.
- ``asgi``: ``PeerCertH11Protocol`` (uvicorn) puts the client certificate in the ASGI scope;
  ``peer_der(scope)`` reads it.
- ``bootstrap``: ``build_region``/``write_region`` for demos and tests.
- Signed messages live in :mod:`certs.jws`.
"""

from __future__ import annotations

from certs.pki.builders import CsrBuilder, NodeCertificateBuilder, RootCaBuilder
from certs.pki.ca import CertificateAuthority
from certs.pki.canonical import canonical_json
from certs.pki.errors import (
    CertificateRefused,
    CrlRefused,
    KeyFileError,
    MessageRefused,
    PkiError,
    PkiInputError,
    TrustListRefused,
)
from certs.pki.keys import generate_key, load_certificate, load_private_key, write_private_key
from certs.pki.profiles import Usage
from certs.pki.revocation import Crl, load_crl
from certs.pki.trustlist import TrustList, TrustListBuilder, load_trust_list
from certs.pki.validate import Identity, TrustAnchors

__all__ = [
    "CertificateAuthority",
    "CertificateRefused",
    "Crl",
    "CrlRefused",
    "CsrBuilder",
    "Identity",
    "KeyFileError",
    "MessageRefused",
    "NodeCertificateBuilder",
    "PkiError",
    "PkiInputError",
    "RootCaBuilder",
    "TrustAnchors",
    "TrustList",
    "TrustListBuilder",
    "TrustListRefused",
    "Usage",
    "canonical_json",
    "generate_key",
    "load_certificate",
    "load_crl",
    "load_private_key",
    "load_trust_list",
    "write_private_key",
]
