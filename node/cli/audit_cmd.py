"""``bdx audit``: list, export and verify the node's tamper-evident exchange log.

The log is opened from the node settings through ``node.exchange.setup.open_transparency_log``
(the node's PKI signing key, ``pki_dir``); ``--signing-key PEM --origin NAME`` opens it with an
explicit log key instead (a node without the exchange configured, or a copy of its database).
``verify`` works offline on an export file and the public keys alone. Searches and exports
are logged as ``auditor_action`` events. ``prune`` deletes what the log and the audit trail
hold from before ``exchange_log_days`` (:mod:`node.audit.retention`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import Engine

from certs.translog import (
    SigningKey,
    TransparencyLog,
    VerifyingKey,
    audit_store,
    verify_export,
)
from certs.translog.errors import KeyTypeError, NoteFormatError
from certs.translog.params import MAX_EXPORT_MIB
from node.audit import query, retention
from node.cli._common import (
    ConfigOption,
    JsonOption,
    count_progress,
    print_json,
    printable,
    read_input,
    settings_from,
    warn,
    writable_output,
    write_output,
)
from node.db.setup import open_database
from node.errors import ConfigError, NotFoundError
from node.exchange.messages import Outcome
from node.service_errors import InvalidRequestError
from node.services.users import os_user

app = typer.Typer(help="Audit the tamper-evident exchange log.", no_args_is_help=True)

SigningKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        help="PEM private key of the log (default: the node's, via its exchange settings)",
        dir_okay=False,
    ),
]
OriginOption = Annotated[
    str | None, typer.Option("--origin", help="the log's origin name (with --signing-key)")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="appended at or after (ISO 8601, UTC if no zone)")
]
UntilOption = Annotated[str | None, typer.Option("--until", help="appended before (ISO 8601)")]
PeerOption = Annotated[
    str | None,
    typer.Option(
        help="peer country (two letters): its queries and replies, and node actions about it "
        "(a hit.resolve of a reference it quoted)"
    ),
]
PurposeOption = Annotated[str | None, typer.Option(help="query purpose")]
OutcomeOption = Annotated[
    Outcome | None, typer.Option(help="a reply's outcome: hit, no_hit, refused or error")
]
ReasonOption = Annotated[str | None, typer.Option(help="refusal reason")]
TypeOption = Annotated[str | None, typer.Option("--type", help="event type")]
OfficerOption = Annotated[str | None, typer.Option(help="requesting officer")]
QueryIdOption = Annotated[
    str | None,
    typer.Option("--query-id", help="a query's id (its events and the node actions naming it)"),
]
ReferenceOption = Annotated[
    str | None,
    typer.Option(
        help="a hit reference (the replies carrying it) or a node action's target; one that "
        "starts with '-' as --reference=VALUE"
    ),
]
ActionOption = Annotated[
    str | None,
    typer.Option(help="a node action (hit.resolve, user.add) or auditor action (export)"),
]

CaseRefOption = Annotated[
    str | None,
    typer.Option(
        "--case-ref",
        help="a case reference: the entries logging it, as text (this node's queries, older "
        "entries) or as the keyed digest a peer's query is logged with (under this node's "
        "hit secret); recorded as given, never its text",
    ),
]


@dataclass
class _Opened:
    log: TransparencyLog
    engine: Engine


def _signing_key(path: Path, origin: str | None) -> SigningKey:
    if not origin:
        raise ConfigError("--signing-key needs --origin", reason="missing_origin")
    try:
        key = load_pem_private_key(read_input(path, "key file"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path} is not a PEM private key: {exc}", reason="bad_key") from None
    return SigningKey(origin, key)  # type: ignore[arg-type]  # SigningKey checks the type


@contextmanager
def _open_log(
    config: Path | None, signing_key: Path | None, origin: str | None
) -> Iterator[_Opened]:
    settings = settings_from(config)
    engine, _ = open_database(settings)
    try:
        if signing_key is not None:
            log = TransparencyLog.open(engine, _signing_key(signing_key, origin))
        else:
            from node.exchange.setup import open_transparency_log  # the exchange's imports

            log = open_transparency_log(settings, engine, record=False, warn=warn)
        yield _Opened(log, engine)
    finally:
        engine.dispose()


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise query.AuditQueryError(f"--{name} {value!r} is not an ISO 8601 time") from None


def _case_ref_digest(config: Path | None) -> Callable[[str, str], str]:
    """The responder's ``case_ref_hmac`` of a case reference quoted by a requester, under
    this node's hit secret (:func:`node.exchange.responder.case_ref_digest`)."""
    from node.exchange.responder import case_ref_digest  # the exchange's imports
    from node.exchange.setup import hit_secret

    secret = hit_secret(settings_from(config), create=False)  # reads both files, writes neither
    return lambda requester, case_ref: case_ref_digest(secret, requester, case_ref)


def _actor() -> str:
    return f"cli:{os_user()}"


def _filter(
    *,
    peer: str | None,
    purpose: str | None,
    outcome: Outcome | None,
    reason: str | None,
    type: str | None,
    officer: str | None,
    since: str | None,
    until: str | None,
    query_id: str | None,
    reference: str | None,
    action: str | None,
) -> query.AuditFilter:
    return query.AuditFilter(
        peer=peer,
        purpose=purpose,
        outcome=outcome and outcome.value,
        reason=reason,
        type=type,
        officer=officer,
        since=_when(since, "since"),
        until=_when(until, "until"),
        query_id=query_id,
        reference=reference,
        action=action,
    )


@app.command("list")
def list_cmd(
    peer: PeerOption = None,
    purpose: PurposeOption = None,
    outcome: OutcomeOption = None,
    reason: ReasonOption = None,
    type: TypeOption = None,
    officer: OfficerOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    query_id: QueryIdOption = None,
    reference: ReferenceOption = None,
    action: ActionOption = None,
    case_ref: CaseRefOption = None,
    offset: Annotated[int, typer.Option(help="skip this many matches")] = 0,
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=query.MAX_PAGE, help=f"most entries to show, at most {query.MAX_PAGE}"
        ),
    ] = query.DEFAULT_PAGE,
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """List log entries that match every filter given, oldest first."""
    flt = _filter(
        peer=peer,
        purpose=purpose,
        outcome=outcome,
        reason=reason,
        type=type,
        officer=officer,
        since=since,
        until=until,
        query_id=query_id,
        reference=reference,
        action=action,
    )
    if case_ref is not None:  # the value checked before the secret is read
        flt = dataclasses.replace(flt, case_ref=case_ref)
        flt = dataclasses.replace(flt, case_ref_digest=_case_ref_digest(config))
    with _open_log(config, signing_key, origin) as opened:
        items, total = query.list_events(opened.log, flt, offset=offset, limit=limit)
        query.record_auditor_action(opened.log, _actor(), "search", flt.to_json())
    if json:
        print_json({"total": total, "items": [i.to_json() for i in items]})
        return
    for item in items:
        ev = item.event
        fields = " ".join(f"{k}={printable(ev[k])}" for k in _LISTED if ev.get(k) is not None)
        typer.echo(f"{item.index:>8} {item.created_at.isoformat()} {item.type:<16} {fields}")
    typer.echo(f"{len(items)} of {total} matching entries")


#: Largest --log-key/--witness-key file read: a vkey is one line of 60 to 200 characters.
MAX_VKEY_FILE_BYTES = 64 * 1024
#: Fields of vkey text, <name>+<key id>+<key>: a value with fewer "+" is taken as a file name.
VKEY_PARTS = 3
#: Event fields `bdx audit list` prints, when an event has them (--json prints every field).
_LISTED = (
    "peer",
    "purpose",
    "direction",
    "allowed",
    "refusal",
    "outcome",
    "reason",
    "officer",
    "actor",
    "action",
    "target",
    "query_id",
    "reference",
    "case_ref",
    "case_ref_hmac",
)


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="file to write", dir_okay=False)],
    format: Annotated[str, typer.Option("--format", help="json (with proofs) or csv")] = "json",
    peer: PeerOption = None,
    purpose: PurposeOption = None,
    outcome: OutcomeOption = None,
    reason: ReasonOption = None,
    type: TypeOption = None,
    officer: OfficerOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    query_id: QueryIdOption = None,
    reference: ReferenceOption = None,
    action: ActionOption = None,
    case_ref: CaseRefOption = None,
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """Export entries (JSON with checkpoints and proofs, checked by `bdx audit verify`).

    A JSON export holds the entries the latest signed checkpoint covers (what it can prove);
    entries appended since wait for the next checkpoint (`bdx audit checkpoint`, or the
    node's own every checkpoint_interval_s), and a warning on stderr says how many.

    The filters are those of `bdx audit list`: with any beyond --since/--until the export is
    a selection (one peer's slice, say), each entry still with its inclusion proof; `bdx
    audit verify` checks it and says it is a selection. --case-ref selects a CSV export
    only, as GET /audit/log/export: a JSON selection is verified offline against the filter
    it records, which this one cannot be without the node's secret."""
    if format not in ("json", "csv"):
        raise query.AuditQueryError(f"--format must be json or csv, not {format!r}")
    if case_ref is not None and format == "json":  # refused before anything is opened
        raise query.AuditQueryError(
            "a JSON export cannot select by --case-ref (it is verified offline, without the "
            "node's secret): export --format csv with it, or list with --case-ref, then "
            "export by --query-id"
        )
    flt = _filter(
        peer=peer,
        purpose=purpose,
        outcome=outcome,
        reason=reason,
        type=type,
        officer=officer,
        since=since,
        until=until,
        query_id=query_id,
        reference=reference,
        action=action,
    )
    if case_ref is not None:  # the value checked before the secret is read, as by list
        flt = dataclasses.replace(flt, case_ref=case_ref)
        flt = dataclasses.replace(flt, case_ref_digest=_case_ref_digest(config))
    writable_output(out)
    with _open_log(config, signing_key, origin) as opened:
        if format == "json":
            latest = opened.log.latest_checkpoint()
            covered = latest.checkpoint.size if latest is not None else 0
            beyond = opened.log.size() - covered
            if beyond > 0:
                warn(
                    f"{beyond} entries after the latest checkpoint (size {covered}) are "
                    "not in the export; run `bdx audit checkpoint` first to include them"
                )
            data = query.export_json(opened.log, flt)
        else:
            data = query.export_csv(opened.log, flt).encode("utf-8")
        write_output(out, data)
        query.record_auditor_action(
            opened.log, _actor(), "export", {**flt.to_json(), "format": format}
        )
    summary = {"out": str(out), "format": format, "bytes": len(data)}
    if json:
        print_json(summary)
    else:
        typer.echo(f"wrote {summary['bytes']} bytes of {format} to {out}")


def _vkeys(value: str, option: str) -> list[VerifyingKey]:
    """The keys ``value`` gives: a vkey file's text or vkey text, one vkey a line (as `bdx pki
    vkey` prints a renewed member's two and the node's ``log-keys.txt`` holds them). A value
    that is neither and looks like a file name (a ``.vkey`` suffix, or not the
    <name>+<key id>+<key> shape) is a missing file, exit 4 (a mistyped th.vkeyy was exit 5, the
    code of a failed verification); malformed key material is bad input, 3. (A "/" tells
    nothing: vkey names and base64 hold them.)"""
    path = Path(value)
    if path.is_file():
        data = read_input(path, f"{option} file", max_bytes=MAX_VKEY_FILE_BYTES)
        try:
            text, where = data.decode("utf-8"), f"{option} file {path}"
        except UnicodeDecodeError:
            raise InvalidRequestError(
                f"{option} file {path} is not vkey text (not UTF-8)", reason="bad_key"
            ) from None
    else:  # `--log-key "$(bdx pki vkey ...)"` during a renewal's overlap: two lines
        text, where = value, option
    lines = [line for line in text.splitlines() if line.strip()] or [text]
    try:
        return [VerifyingKey.from_vkey(line)[0] for line in lines]
    except (NoteFormatError, KeyTypeError) as exc:
        named = value.endswith(".vkey") or value.count("+") < VKEY_PARTS - 1
        if where == option and named:
            if not path.exists():
                raise NotFoundError(
                    f"no {option} file {printable(value)} (nor is it vkey text)",
                    reason="key_not_found",
                ) from None
            raise InvalidRequestError(
                f"{option} file {printable(value)} is not a file", reason="unreadable_file"
            ) from None
        raise InvalidRequestError(f"{where}: {exc.message}", reason=exc.reason) from None


@app.command("verify")
def verify_cmd(
    export: Annotated[Path, typer.Argument(help="a JSON export file", dir_okay=False)],
    log_key: Annotated[
        list[str] | None,
        typer.Option(
            "--log-key",
            help="the log's public key (vkey text, or a file of one or more, one a line); "
            "repeat for the keys it was signed with before a renewal",
        ),
    ] = None,
    witness_key: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-key",
            help="a trusted witness's vkey (text, or a file of one or more, one a line); repeat",
        ),
    ] = None,
    min_cosignatures: Annotated[
        int,
        typer.Option(
            min=0,
            help="trusted cosignatures the export's last checkpoint needs (the earlier ones "
            "are tied to it by consistency proofs)",
        ),
    ] = 0,
    max_mib: Annotated[
        int, typer.Option(min=1, help="largest export read, MiB (about 8x that in memory)")
    ] = MAX_EXPORT_MIB,
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """Verify an export offline: signatures, consistency, order and inclusion of every entry.

    Exits 0 when everything verifies, 5 with the reason when it does not; 2 with no log key
    (no --log-key, --signing-key or node settings with pki_dir), 3 for a malformed export or
    key, 4 for an export or key file that does not exist."""
    keys: Sequence[VerifyingKey]
    if log_key:
        keys = [key for k in log_key for key in _vkeys(k, "--log-key")]
    elif signing_key is None and settings_from(config).pki_dir is None:  # not on the node
        raise ConfigError(
            "no log key: give --log-key KEY (from `bdx pki vkey`), or on the node --signing-key "
            "with --origin, or its settings with pki_dir",
            reason="no_log_key",
        )
    else:
        with _open_log(config, signing_key, origin) as opened:
            keys = opened.log.verifying_keys
    data = read_input(export, "export file", max_bytes=max_mib << 20)
    report = verify_export(
        data,
        keys,
        [key for w in witness_key or [] for key in _vkeys(w, "--witness-key")],
        min_cosignatures=min_cosignatures,
    )
    if report.selection is not None:
        query.check_selection(data, report.selection)
    doc: dict[str, Any] = report.to_json()
    doc["proofs_checked"] = report.entries_verified + report.checkpoints_verified - 1
    if json:
        print_json(doc)
        return
    pruned = f" ({report.entries_pruned} pruned: leaf hash only)" if report.entries_pruned else ""
    typer.echo(
        f"OK {report.origin}: {report.entries_verified} entries{pruned} "
        f"[{report.start}, {report.end}), {report.checkpoints_verified} checkpoints, "
        f"{doc['proofs_checked']} proofs checked, tree size {report.tree_size}"
    )
    if report.selection is not None:
        chosen = " ".join(f"{k}={printable(str(v))}" for k, v in sorted(report.selection.items()))
        if report.selection_attested_from is not None:
            since = report.selection_attested_from
            rest = (
                "the log signed that the range holds no other match (its word: what it "
                "left out cannot be checked from this file)"
                if since == report.start
                else f"the log signed that entries [{since}, {report.end}) hold no other match "
                f"(its word; entries below {since} were pruned, which no filter can read)"
            )
        else:
            rest = (
                "the log did not sign that the range holds no other match (an export from "
                "before bdx signed selections, or the statement removed): that rests on where "
                "the file came from (anyone holding it can leave entries out)"
            )
        typer.echo(
            f"a selection ({chosen or 'no filter recorded'}): the entries shown are proven "
            f"and match it; {rest}"
        )


@app.command("store")
def store_cmd(
    log_key: Annotated[
        list[str] | None,
        typer.Option(
            "--log-key",
            help="public key to trust (vkey text or file); repeat for keys the log was signed "
            "with before a renewal (default: the log's own, earlier ones included)",
        ),
    ] = None,
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """Audit the whole stored log against its signed checkpoints (exit 5 on tampering)."""
    with _open_log(config, signing_key, origin) as opened:
        report = audit_store(
            opened.log,
            [key for k in log_key for key in _vkeys(k, "--log-key")] if log_key else None,
        )
    doc = {
        "origin": report.origin,
        "tree_size": report.tree_size,
        "root_hash": report.root_hash.hex(),
        "entries_checked": report.entries_checked,
        "entries_pruned": report.entries_pruned,
        "checkpoints_checked": report.checkpoints_checked,
    }
    if json:
        print_json(doc)
    else:
        pruned = f" ({report.entries_pruned} pruned)" if report.entries_pruned else ""
        typer.echo(
            f"OK {report.origin}: {report.entries_checked} entries{pruned} and "
            f"{report.checkpoints_checked} checkpoints match"
        )


@app.command("prune")
def prune_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would be deleted, delete nothing")
    ] = False,
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """Delete what the exchange log and the audit trail hold from before exchange_log_days.

    The log's entries appended before then lose their bytes (their leaf hashes stay, so the
    log, its checkpoints and exports still verify; each pruning is logged as a log_pruned
    event), the audit trail's events go, and so do the officers' history rows of the queries
    pruned. bdx serve does the same hourly. The run is recorded in the audit trail
    (audit.prune, with your user). An entry older than then that cannot be pruned (a store
    time in the future, or one a signed checkpoint proves later) stops it with a warning and
    complete false. Exit 0 when done, 2 for bad settings, 5 when the log refuses (tampering
    found: the pruned boundary, or bytes erased at it, checked before anything)."""
    settings = settings_from(config)
    with _open_log(config, signing_key, origin) as opened:
        if dry_run:
            report = retention.prune(
                opened.log, opened.engine, settings.exchange_log_days, dry_run=True
            )
        else:
            _, total = opened.log.prunable(retention.horizon(settings.exchange_log_days))
            with count_progress(json) as bar:
                task = bar.add_task("pruning", total=total)
                report = retention.prune(
                    opened.log,
                    opened.engine,
                    settings.exchange_log_days,
                    on_progress=lambda n: bar.advance(task, n),
                    actor=_actor(),
                )
    if report.reason is not None:
        warn(
            f"entries older than the horizon are left from index {report.boundary} "
            f"[{report.reason}]: see the README's retention section"
        )
    if json:
        print_json(report.to_json())
        return
    verb = "would delete" if report.dry_run else "deleted"
    typer.echo(
        f"{verb} the bytes of {report.entries_pruned} exchange log entries from before "
        f"{report.horizon.isoformat()} (pruned below index {report.boundary}), "
        f"{report.sent_queries_deleted} sent queries from the history index, "
        f"{report.audit_events_deleted} audit trail events"
    )


@app.command("checkpoint")
def checkpoint_cmd(
    config: ConfigOption = None,
    signing_key: SigningKeyOption = None,
    origin: OriginOption = None,
    json: JsonOption = False,
) -> None:
    """Sign a checkpoint of the log's current tree now."""
    with _open_log(config, signing_key, origin) as opened:
        signed = opened.log.issue_checkpoint()
    cp = signed.checkpoint
    doc = {"origin": cp.origin, "size": cp.size, "root_hash": cp.root_hash.hex()}
    if json:
        print_json({**doc, "timestamp_ms": cp.timestamp_ms, "note": signed.to_bytes().decode()})
    else:
        typer.echo(f"checkpoint of {cp.origin} at size {cp.size}, root {doc['root_hash']}")
