"""``bdx pki``: the regional PKI (root CA, node certificates, trust list, CRL, checks).

Typical flow (see ``bdx pki bootstrap`` for a whole demo region in one command)::

    bdx pki init-ca --country TH --out ca/ [--passphrase-file pw]
    bdx pki request --country ID --node-name bdx-id --kind tls --dns node-id --out id/
    bdx pki issue --ca ca/ --csr id/id-tls.csr --kind tls --days 365 --out id/id-tls.pem
    bdx pki trust-list --ca ca/ --member ID=id/id-tls.pem,id/id-signing.pem --out tl.jws
    bdx pki crl --ca ca/ --out crl.pem
    bdx pki verify --trust-list tl.jws --root ca/ca.pem --crl crl.pem id/id-tls.pem --usage tls
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.progress import Progress
from typer._click.exceptions import MissingParameter

from certs.pki import CertificateAuthority, CsrBuilder, TrustAnchors, Usage
from certs.pki.bootstrap import Region, make_node, write_region
from certs.pki.ca import CERT_FILE
from certs.pki.describe import describe
from certs.pki.errors import PkiInputError
from certs.pki.keys import (
    certificate_pem,
    generate_key,
    load_certificate,
    load_csr,
    read_file,
    write_private_key,
    write_public,
)
from certs.pki.names import validate_country
from certs.pki.params import MAX_PASSPHRASE_FILE_BYTES
from certs.pki.revocation import crl_pem
from certs.translog.keys import Purpose
from node.cli._common import no_progress, progress_console, writable_folder, writable_output

#: Longest validity or update interval accepted (days): 100 years, far beyond any sane value and
#: well inside what a certificate's UTCTime/GeneralizedTime can hold.
MAX_DAYS = 36_500

app = typer.Typer(
    help="Regional PKI: root CA, node TLS/signing certificates, trust list, CRL, validation.",
    no_args_is_help=True,
)

CaDir = Annotated[Path, typer.Option("--ca", help="CA directory (from init-ca).")]
PassFile = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File holding the private key passphrase."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Kind = Annotated[Usage, typer.Option("--kind", help="Certificate kind: tls or signing.")]
#: The published trust anchors a certificate or key is validated against.
TrustListOpt = Annotated[Path, typer.Option("--trust-list", help="Trust list (JWS).")]
RootOpt = Annotated[Path, typer.Option("--root", help="Pinned root certificate.")]
CrlOpt = Annotated[Path, typer.Option("--crl", help="Current CRL.")]


@contextmanager
def _option_value(*options: str) -> Iterator[None]:
    """A :class:`PkiInputError` raised here is about what ``options`` were given (a country
    code, a node name, an IP address): a usage error naming them, exit 2, not bad input data
    (3). Only for checks of option values: files read here keep their own exit codes."""
    try:
        yield
    except PkiInputError as exc:
        raise typer.BadParameter(exc.message, param_hint=" / ".join(options)) from None


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    secret = read_file(path, max_bytes=MAX_PASSPHRASE_FILE_BYTES).rstrip(b"\r\n")
    if not secret:
        raise PkiInputError(f"{path} is empty", reason="empty_passphrase")
    return secret


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True, default=str))
    else:
        for key, value in data.items():
            typer.echo(f"{key}: {value}")


def _ca_country(country: str | None, country_name: str | None) -> str:
    """The root's country from ``--country``, or from ``--country-name``, its spelling before
    the other commands' ``--country`` was taken up (kept for scripts; a warning on stderr)."""
    if country is not None and country_name is not None:
        raise typer.BadParameter(
            "give --country only (--country-name is its old spelling)", param_hint="--country"
        )
    if country_name is not None:
        typer.echo("bdx: warning: --country-name is deprecated; use --country", err=True)
        return country_name
    if country is None:
        raise MissingParameter(param_hint="'--country'", param_type="option")
    return country


@app.command("init-ca")
def init_ca(
    out: Annotated[Path, typer.Option(help="New CA directory.")],
    country: Annotated[
        str | None,
        typer.Option(help="Country (C=) of the root CA, ISO 3166-1 alpha-2, e.g. TH. Required."),
    ] = None,
    common_name: Annotated[str, typer.Option(help="CN of the root.")] = "bdx regional root CA",
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Root validity in days.")] = 3650,
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
    country_name: Annotated[
        str | None, typer.Option("--country-name", hidden=True, help="Deprecated: --country.")
    ] = None,
) -> None:
    """Create the regional root CA (key 0600, self-signed certificate, state)."""
    with _option_value("--country"):
        code = validate_country(_ca_country(country, country_name))
    writable_folder(out)
    ca = CertificateAuthority.create(
        code,
        directory=out,
        common_name=common_name,
        passphrase=_passphrase(passphrase_file),
        validity=dt.timedelta(days=days),
    )
    _emit(
        {"ca": str(out), "root": str(out / CERT_FILE), **describe(certificate_pem(ca.cert))},
        as_json,
    )


@app.command()
def request(
    country: Annotated[str, typer.Option(help="The node's country, ISO 3166-1 alpha-2.")],
    kind: Kind,
    out: Annotated[Path, typer.Option(help="Directory for the key and the CSR.")],
    node_name: Annotated[str | None, typer.Option(help="Node name (CN prefix).")] = None,
    dns: Annotated[list[str] | None, typer.Option(help="DNS name (TLS; repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option(help="IP address (TLS; repeatable).")] = None,
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
) -> None:
    """Make a node key (0600) and a certificate signing request."""
    with _option_value("--country"):
        code = validate_country(country)
    builder = CsrBuilder().country(code).usage(kind)
    if node_name:
        with _option_value("--node-name"):
            builder = builder.node_name(node_name)
    with _option_value("--dns"):
        builder = builder.dns_names(dns or [])
    with _option_value("--ip"):
        builder = builder.ip_addresses(ip or [])
    key = generate_key()
    with _option_value("--dns", "--ip"):  # a TLS CSR needs one, a signing CSR none
        csr = builder.sign(key)  # validates before anything is written
    writable_folder(out)
    stem = f"{code.lower()}-{kind}"
    key_path = write_private_key(out / f"{stem}.key", key, _passphrase(passphrase_file))
    csr_path = write_public(out / f"{stem}.csr", csr.public_bytes(serialization.Encoding.PEM))
    _emit(
        {"key": str(key_path), "csr": str(csr_path), "subject": csr.subject.rfc4514_string()},
        as_json,
    )


@app.command()
def issue(
    ca_dir: CaDir,
    csr: Annotated[Path, typer.Option(help="The node's CSR (PEM or DER).")],
    kind: Kind,
    out: Annotated[Path, typer.Option(help="Certificate file to write (PEM).")],
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Validity in days.")] = 365,
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
) -> None:
    """Issue a TLS or signing certificate from a CSR."""
    writable_output(out)
    ca = CertificateAuthority.open(ca_dir, passphrase=_passphrase(passphrase_file))
    cert = ca.issue(load_csr(csr), kind, validity=dt.timedelta(days=days))
    write_public(out, certificate_pem(cert))
    _emit({"certificate": str(out), **describe(certificate_pem(cert))}, as_json)


REASONS = [r.value for r in x509.ReasonFlags if r.value not in ("removeFromCRL", "unspecified")]


@app.command()
def revoke(
    ca_dir: CaDir,
    cert: Annotated[Path, typer.Option(help="Certificate to revoke.")],
    reason: Annotated[
        str, typer.Option(help=f"RFC 5280 reason: unspecified, {', '.join(REASONS)}.")
    ] = "unspecified",
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
) -> None:
    """Put a certificate on the next CRL (publish it with `bdx pki crl`)."""
    try:
        flag = x509.ReasonFlags(reason)
    except ValueError:
        raise typer.BadParameter(f"unknown reason {reason!r}", param_hint="--reason") from None
    ca = CertificateAuthority.open(ca_dir, passphrase=_passphrase(passphrase_file))
    target = load_certificate(cert)
    ca.revoke(target, reason=flag)
    _emit(
        {"revoked": f"{target.serial_number:x}", "subject": target.subject.rfc4514_string()},
        as_json,
    )


@app.command()
def crl(
    ca_dir: CaDir,
    out: Annotated[Path, typer.Option(help="CRL file to write (PEM).")],
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Days until next update.")] = 7,
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
) -> None:
    """Publish the next CRL."""
    writable_output(out)
    ca = CertificateAuthority.open(ca_dir, passphrase=_passphrase(passphrase_file))
    data = crl_pem(ca.crl(validity=dt.timedelta(days=days)))
    write_public(out, data)
    _emit({"crl": str(out), **describe(data)}, as_json)


def _parse_member(text: str) -> tuple[str, Path, Path]:
    country, sep, files = text.partition("=")
    tls, comma, signing = files.partition(",")
    if not (sep and comma and tls and signing):
        raise typer.BadParameter(
            f"{text!r}: expected CC=tls.pem,signing.pem", param_hint="--member"
        )
    with _option_value("--member"):
        return validate_country(country), Path(tls), Path(signing)


@app.command("trust-list")
def trust_list(
    ca_dir: CaDir,
    out: Annotated[Path, typer.Option(help="Trust list file to write (compact JWS).")],
    member: Annotated[
        list[str] | None,
        typer.Option(
            help="CC=tls.pem,signing.pem (repeatable). A country given again, here or in "
            "--members-dir, is listed with both pairs: a renewed node's new certificates "
            "beside the old ones (at most 2 of each kind)."
        ),
    ] = None,
    members_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of <cc>/tls.pem + <cc>/signing.pem.", exists=True, file_okay=False
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="Days until next update.")] = 7,
    passphrase_file: PassFile = None,
    as_json: JsonOut = False,
) -> None:
    """Publish the next signed trust list of member certificates (old and new side by side
    for a member given twice, while it renews its certificates)."""
    entries = [_parse_member(m) for m in member or []]
    if members_dir is not None:
        for folder in sorted(p for p in members_dir.iterdir() if p.is_dir()):
            entries.append(
                (validate_country(folder.name), folder / "tls.pem", folder / "signing.pem")
            )
    if not entries:
        raise typer.BadParameter("give --member or --members-dir", param_hint="--member")
    writable_output(out)
    ca = CertificateAuthority.open(ca_dir, passphrase=_passphrase(passphrase_file))
    members = [(cc, load_certificate(t), load_certificate(s)) for cc, t, s in entries]
    token = ca.trust_list(members, validity=dt.timedelta(days=days))
    write_public(out, token.encode("ascii") + b"\n")
    _emit({"trust_list": str(out), **describe(token.encode("ascii"))}, as_json)


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="Certificate, CSR, CRL, trust list or JWS.")],
    as_json: JsonOut = False,
) -> None:
    """Describe a PKI file (not verified: use `bdx pki verify` for that)."""
    _emit(describe(read_file(file)), as_json)


@app.command()
def verify(
    cert: Annotated[Path, typer.Argument(help="Certificate to validate.")],
    trust_list: TrustListOpt,
    root: RootOpt,
    crl: CrlOpt,
    country: Annotated[str | None, typer.Option(help="Expected country.")] = None,
    usage: Annotated[Usage, typer.Option(help="tls or signing.")] = Usage.TLS,
    as_json: JsonOut = False,
) -> None:
    """Validate a certificate (chain, trust list, CRL, usage, country); exit 5 if refused."""
    anchors = TrustAnchors.load(root, trust_list, crl)
    identity = anchors.validate(load_certificate(cert), usage, expected_country=country)
    _emit(
        {
            "status": "valid",
            "country": identity.country,
            "node_name": identity.node_name,
            "usage": str(identity.usage),
            "sha256": identity.fingerprint,
            "not_after": identity.not_after.isoformat(),
        },
        as_json,
    )


@app.command()
def vkey(
    country: Annotated[str, typer.Option(help="The member whose key is wanted, e.g. TH.")],
    trust_list: TrustListOpt,
    root: RootOpt,
    crl: CrlOpt,
    witness: Annotated[
        bool, typer.Option("--witness", help="Its witness key (cosignatures), not its log key.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Print a member's exchange-log verifier key (or, with --witness, its witness key) from
    its signing certificate in the validated trust list: the keys that bdx audit verify takes
    (--log-key, --witness-key), from the region's PKI rather than from the audited node.

    A member listed with two signing certificates (a renewal's overlap) has two keys: both are
    printed, the newest first, one a line (a file of this output is one --log-key or
    --witness-key). With --json: {"country", "purpose" ("note" for the log key, "cosignature"
    for the witness key), "vkey" (the newest), "vkeys" (all, newest first)}.
    """
    from node.exchange.witnessing import peer_log_keys, peer_witness_keys

    with _option_value("--country"):
        cc = validate_country(country)
    anchors = TrustAnchors.load(root, trust_list, crl)
    purpose: Purpose = "cosignature" if witness else "note"
    keys = peer_witness_keys(anchors, cc) if witness else peer_log_keys(anchors, cc)
    vkeys = [key.to_vkey(purpose) for key in keys]
    if as_json:
        _emit({"country": cc, "purpose": purpose, "vkey": vkeys[0], "vkeys": vkeys}, as_json=True)
    else:
        typer.echo("\n".join(vkeys))


@app.command()
def bootstrap(
    countries: Annotated[str, typer.Option(help="Comma-separated country codes, e.g. TH,ID,MY.")],
    out: Annotated[Path, typer.Option(help="Run directory to create (never inside the repo).")],
    passphrase_file: PassFile = None,
    exist_ok: Annotated[
        bool, typer.Option(help="If OUT already holds a region, leave it and succeed.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Make a whole demo region: root CA, each country's TLS+signing keys/certs, trust list, CRL."""
    with _option_value("--countries"):
        codes = [validate_country(c) for c in countries.split(",") if c.strip()]
    if not codes or len(set(codes)) != len(codes):
        raise typer.BadParameter("give distinct country codes", param_hint="--countries")
    if (out / "ca" / CERT_FILE).exists():
        if not exist_ok:
            raise PkiInputError(f"{out} already holds a region", reason="file_exists")
        try:
            manifest = json.loads(read_file(out / "region.json"))
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            raise PkiInputError(
                f"{out} holds a CA but no readable region.json: not a region bootstrap made",
                reason="not_a_region",
            )
        _emit({"out": str(out), "existing": True, **manifest}, as_json)
        return
    writable_folder(out)
    ca = CertificateAuthority.create(codes[0])
    nodes = {}
    console = progress_console()
    with Progress(
        transient=True, disable=no_progress(console, as_json), console=console
    ) as progress:
        task = progress.add_task("issuing node certificates", total=len(codes))
        for code in codes:
            nodes[code] = make_node(ca, code)
            progress.advance(task)
    token = ca.trust_list([(n.country, n.tls_cert, n.signing_cert) for n in nodes.values()])
    manifest = write_region(
        Region(ca, nodes, token, crl_pem(ca.crl())), out, passphrase=_passphrase(passphrase_file)
    )
    _emit({"out": str(out), "countries": ",".join(codes), **manifest}, as_json)
