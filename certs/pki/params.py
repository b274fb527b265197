"""Tunables of the regional PKI and signed messages, each with the reason for its value."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ObjectIdentifier

# Key generation: ECDSA P-256 is what ES256 (JWS) needs and what every TLS 1.2/1.3 stack speaks.
KEY_CURVE: type[ec.EllipticCurve] = ec.SECP256R1
# Curves accepted in presented certificates (P-384 for CAs that prefer it); nothing smaller.
ALLOWED_CURVES: frozenset[str] = frozenset({"secp256r1", "secp384r1"})
# Signature hashes accepted on certificates, CRLs: SHA-2 with >= 256 bits (no SHA-1, no MD5).
ALLOWED_HASHES: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})

# Root CA lifetime: long, because the root is kept offline and pinned by every node.
ROOT_VALIDITY = dt.timedelta(days=3650)
# Node certificates: one year, the usual operational rotation period.
NODE_VALIDITY = dt.timedelta(days=365)
# Certificates start this long before "now", so peers with slightly slow clocks accept them.
BACKDATE = dt.timedelta(minutes=5)
# CRL and trust list are re-published weekly; nodes refuse them once past next-update + grace.
CRL_VALIDITY = dt.timedelta(days=7)
TRUST_LIST_VALIDITY = dt.timedelta(days=7)
# Grace after next-update before a list is "stale": one day covers a missed publication run.
DEFAULT_GRACE = dt.timedelta(days=1)
# A node warns this long before its own TLS or signing certificate expires: a week leaves
# time for a CSR, the CA's issue and a trust list naming the new certificate. (Its trust list
# and CRL are warned about from their next update on: the grace before they go stale.)
CERT_EXPIRY_WARNING = dt.timedelta(days=7)

# Root -> node certificate, no intermediates: the region has one offline root (depth counts
# intermediates in cryptography's verifier).
MAX_CHAIN_DEPTH = 1
# Validated-chain cache entries (one per peer certificate); a region has tens of nodes.
CACHE_MAX_ENTRIES = 4096

# Dedicated extended key usage of message-signing certificates: a UUID-derived OID under the
# ITU-T X.667 arc 2.25, which needs no registration. Its presence makes OpenSSL refuse a signing
# certificate offered as a TLS client or server certificate.
SIGNING_EKU = ObjectIdentifier("2.25.10067089407959802469867837931370993930")

# JWS: ES256 only (RFC 7518 "recommended+"); "none", HS*, RS* are refused.
JWS_ALGORITHMS: tuple[str, ...] = ("ES256",)
# The protected header this project writes (certs.pki.jose.sign_compact: these keys in this
# order, compact JSON), and the only one it reads: any other parameter or form is refused,
# and ``kid`` must repeat ``x5t#S256``. A stored token
# (an exchange reply kept in the audit log) then carries nothing its signer chose freely.
JWS_HEADER_ORDER: tuple[str, ...] = ("alg", "typ", "kid", "x5t#S256", "x5c")
JWS_HEADER_PARAMETERS = frozenset(JWS_HEADER_ORDER)
# Expected header segments kept (one per signer and message type: a region has tens of nodes);
# small, because the values are read from tokens before their signature is checked.
HEADER_CACHE_ENTRIES = 64
# Media types (RFC 7515 "typ") that keep one kind of signed document from passing as another.
MESSAGE_TYP = "bdx-msg+jws"
TRUST_LIST_TYP = "bdx-trust-list+jws"
# Largest compact JWS accepted: a query carries at most 11 templates of <= 64 KiB (base64url
# twice: ~1.25 MiB) plus an x5c of ~1 KiB; 2 MiB bounds memory per message.
MAX_TOKEN_BYTES = 2 << 20
# Largest files the PKI reads (certs.pki.keys.read_file). A path an option or setting names
# may be a device or a FIFO (/dev/zero was read without end, a FIFO waited on forever): a FIFO
# or device is refused at once and a file is read no further than its bound (file_too_large,
# exit 3), each far above any real file of its kind. A private key, a certificate (or a short
# chain) and a CSR are under 2 KB each.
MAX_PEM_FILE_BYTES = 1 << 20
# A trust list is one compact JWS, refused above MAX_TOKEN_BYTES: twice that leaves room for
# whatever whitespace surrounds it.
MAX_TRUST_LIST_FILE_BYTES = 2 * MAX_TOKEN_BYTES
# A passphrase file holds one line.
MAX_PASSPHRASE_FILE_BYTES = 64 * 1024
# Any other PKI file (a CRL, the CA's state, what `bdx pki show` describes): a CRL grows by
# about 40 bytes a revoked certificate and the CA's state by about 200 an issued one, so 64 MiB
# is hundreds of thousands of certificates, far beyond a region of tens of nodes.
MAX_PKI_FILE_BYTES = 64 << 20
# Largest JWS protected header: an x5c chain of a few ~700-byte certificates fits in 16 KiB.
MAX_HEADER_BYTES = 16 * 1024
# Deepest nesting of objects and lists in a signed payload or header. The project's messages
# and trust lists nest at most 5 levels; a peer's 2,000 levels (6.5 KB) would otherwise exhaust
# the parser's stack (RecursionError, an unlogged 500) before the signature is even checked.
MAX_JSON_DEPTH = 32
# Versions of signed payloads (the "v" field) this code reads.
PAYLOAD_VERSION = 1
# Trust lists: version 1 lists one TLS and one signing certificate per member; version 2 lists
# one or two of each (a renewed member's old and new certificates side by side). Version 2 is
# written only for a list that needs it, so nodes that read version 1 only go on reading every
# list published outside a renewal.
TRUST_LIST_VERSION = 1
TRUST_LIST_ROLLOVER_VERSION = 2
# Certificates of one usage a member may have listed at once: the one in use and its renewal.
# Bounded, so that a member never holds more than one spare valid key of each kind.
MAX_LISTED_PER_USAGE = 2
# Subject alternative names a node's TLS certificate may carry: a node has a few host names
# and addresses; a CSR asking for more is a mistake or an attempt to cover others' hosts.
MAX_SAN_ENTRIES = 16
