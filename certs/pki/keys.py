"""Private keys and certificate files.

Private keys are created with ``os.open(..., 0o600)`` (the file never exists with wider
permissions) and refuse to overwrite an existing file. A passphrase encrypts them with
``BestAvailableEncryption``. Public material (certificates, CSRs, CRLs, trust lists) is written
atomically (temporary file + rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from certs.pki import params, reasons
from certs.pki.errors import KeyFileError, PkiFileNotFound, PkiInputError
from matcher.readfile import FileTooLargeError, read_bounded

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_PEM = params.MAX_PEM_FILE_BYTES


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA key on :data:`certs.pki.params.KEY_CURVE` (P-256)."""
    return ec.generate_private_key(params.KEY_CURVE())


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with the best available scheme if ``passphrase``."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def write_private_key(
    path: str | os.PathLike[str], key: PrivateKey, passphrase: bytes | None = None
) -> Path:
    """Write ``key`` to a new file ``path`` with mode 0600; refuse to overwrite."""
    target = Path(path)
    data = private_key_pem(key, passphrase)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{target} exists; refusing to overwrite a private key", reason=reasons.FILE_EXISTS
        ) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return target


def load_private_key(
    source: bytes | str | os.PathLike[str], passphrase: bytes | None = None
) -> PrivateKey:
    """Load a PEM private key (bytes or path); typed errors for a missing or wrong passphrase."""
    data = source if isinstance(source, bytes) else read_file(source, max_bytes=_PEM)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise KeyFileError(
                "the private key is not encrypted but a passphrase was given",
                reason=reasons.BAD_PASSPHRASE,
            ) from None
        raise KeyFileError(
            "the private key is encrypted; give its passphrase", reason=reasons.PASSPHRASE_REQUIRED
        ) from None
    except ValueError:
        if passphrase and b"ENCRYPTED" in data:
            raise KeyFileError(
                "wrong passphrase for the private key", reason=reasons.BAD_PASSPHRASE
            ) from None
        raise PkiInputError("not a PEM private key", reason=reasons.BAD_KEY) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(
            f"unsupported private key type {type(key).__name__} (ECDSA or Ed25519 only)",
            reason=reasons.WEAK_ALGORITHM,
        )
    return key


def load_certificate(source: bytes | str | os.PathLike[str]) -> x509.Certificate:
    """Load one certificate, PEM or DER, from bytes or a path."""
    data = source if isinstance(source, bytes) else read_file(source, max_bytes=_PEM)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:  # the file is not one (exit 3), not a certificate refused (exit 5)
        raise PkiInputError(
            "not an X.509 certificate (PEM or DER)", reason=reasons.BAD_CERTIFICATE
        ) from None


def load_csr(source: bytes | str | os.PathLike[str]) -> x509.CertificateSigningRequest:
    """Load a certificate signing request, PEM or DER."""
    data = source if isinstance(source, bytes) else read_file(source, max_bytes=_PEM)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise PkiInputError(
            "not a certificate signing request (PEM or DER)", reason=reasons.BAD_CSR
        ) from None


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_public(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write public material (certificate, CSR, CRL, trust list) to ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def read_file(path: str | os.PathLike[str], *, max_bytes: int = params.MAX_PKI_FILE_BYTES) -> bytes:
    """The bytes of ``path``: a typed ``unreadable_file`` error if it cannot be read or is no
    regular file (a FIFO is refused at once, not waited on), ``file_too_large`` (exit 3) past
    ``max_bytes`` (see :mod:`certs.pki.params` for the bound of each kind), read no further."""
    try:
        return read_bounded(path, max_bytes)
    except FileNotFoundError:
        raise PkiFileNotFound(f"cannot read {path}: no such file") from None
    except FileTooLargeError as exc:
        raise PkiInputError(
            f"cannot read {path}: {exc.strerror}", reason=reasons.FILE_TOO_LARGE
        ) from None
    except OSError as exc:
        raise PkiInputError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}",
            reason=reasons.UNREADABLE_FILE,
        ) from None
