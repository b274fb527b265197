"""``bdx subjects``: an operator's view of the running node's subjects, their deletion, and the
follow-up of a hit this node answered.

The commands go through the local node's API (``GET /subjects``, ``GET /subjects/{id}``,
``PUT /subjects/{id}/restrictions``, ``PUT /records/{reference}/restrictions``,
``DELETE /subjects/{id}``, ``POST /subjects/deletions``, ``POST /subjects/{id}/merge``,
``PUT /subjects/{id}/external-id``,
``GET /hits/{reference}``,
``PUT /hits/{reference}/outcome``, ``GET /subjects/{id}/hits``) with an operator's token,
because the running node holds the gallery: a deletion hides the subject's records from
searches at once, and the node erases their templates from the gallery files within
``gallery_erase_interval_s``; a resolved reference, and an outcome recorded on one, are
recorded in the node's audit trail. Connection options and exit codes: :mod:`node.cli._client`.
"""

from __future__ import annotations

import codecs
import json as json_module
import re
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from node.cli._client import (
    CaFileOption,
    NodeClient,
    NodeRequestError,
    TokenFileOption,
    TokenOption,
    UrlOption,
)
from node.cli._common import ConfigOption, JsonOption, count_progress, print_json, printable
from node.cli.gallery_cmd import restrictions_option
from node.db.models import EXTERNAL_ID_CHARS, LABEL_PATTERN, is_external_id
from node.exchange.references import NOTE_CHARS, HitOutcome
from node.repositories.hits import BadCursorError, HitCursor, OutcomeState
from node.restrictions import SharingRestrictions
from node.services import params as service_params

app = typer.Typer(
    help="List, show, restrict, delete, merge and rename the running node's subjects, "
    "resolve a hit "
    "reference for follow-up and record its outcome (operators).",
    no_args_is_help=True,
)

#: Seconds to wait for the node (a deletion commits to the database and the gallery).
CLIENT_TIMEOUT_S = 60.0
#: Subjects per page when listing (the API's largest page is 1000).
PAGE_DEFAULT = 100

ExternalId = Annotated[str, typer.Argument(help="the subject's external id")]
Reference = Annotated[
    str,
    typer.Argument(
        help="the hit reference a peer quotes (this node no longer issues one that starts "
        "with '-'; for an older one, put -- before it)"
    ),
]
#: Exit code of a request that clashes with the node's state (README: 3), as the node's 409.
EXIT_CONFLICT = 3
#: Exit code of the node's storage at fault (README: 7): a merge whose duplicate's templates
#: the gallery lost.
EXIT_STORAGE = 7
#: Exit code of bad input data (README: 3, the contents of a file, never 2): ``delete
#: --file``'s list with a bad id, no id, or not UTF-8 text.
EXIT_BAD_INPUT = 3
#: Exit code of a usage error (README: 2): no confirmation where one is needed.
EXIT_USAGE = 2
#: Exit code of something not found (README: 4): ``delete --file``'s list, or a subject.
EXIT_NOT_FOUND = 4
#: Subjects ``delete --file`` sends per request: small enough that the bar moves every second
#: or so, and at most the node's bound (``params.MAX_BULK_DELETIONS``).
DELETE_CHUNK = min(100, service_params.MAX_BULK_DELETIONS)
#: Largest id list ``delete --file`` reads (bytes): some million ids, read no further (a
#: device or pipe states no size).
MAX_ID_LIST_BYTES = 64 * 1024 * 1024
#: Bad lines of an id list quoted in its one-line error (the rest are counted).
BAD_LINES_SHOWN = 10


def _client(
    token: str | None, token_file: Path | None, url: str | None, ca_file: Any, config: Any
) -> NodeClient:
    return NodeClient(
        token=token,
        token_file=token_file,
        url=url,
        ca_file=ca_file,
        config=config,
        timeout_s=CLIENT_TIMEOUT_S,
        role="operator",
    )


def _path(external_id: str) -> str:
    return "/subjects/" + quote(external_id, safe="")


@app.command("list")
def list_(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="subjects to show (one page)")
    ] = PAGE_DEFAULT,
    after: Annotated[
        int, typer.Option(min=0, help="continue after this cursor (the last page's next_after)")
    ] = 0,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List subjects with their number of records and state (active, or deleting: a
    deletion that has begun and not finished), oldest first, one page at a time."""
    with _client(token, token_file, url, ca_file, config) as client:
        page = client.call(
            "GET", "/subjects", params={"limit": limit, "after": after}, what="the listing"
        )
    if json:
        print_json(page)
        return
    for item in page["items"]:
        who = printable(item["external_id"])
        typer.echo(f"{who}\t{item['records']} records\t{item['created_at']}\t{item['state']}")
    if page["next_after"] is not None:
        typer.echo(f"more: bdx subjects list --after {printable(page['next_after'])}", err=True)


@app.command()
def show(
    external_id: ExternalId,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Show a subject's encounters and records (references, states, sharing restrictions)."""
    with _client(token, token_file, url, ca_file, config) as client:
        subject = client.call("GET", _path(external_id), what="the look-up")
    if json:
        print_json(subject)
        return
    who = printable(subject["external_id"])
    typer.echo(f"subject {who} (since {subject['created_at']})")
    if subject["state"] == "deleting":
        typer.echo(
            "  deletion pending (the gallery could not be written): its records are out of "
            "every search; the node finishes it once it can, or `bdx subjects delete` again"
        )
    for enc in subject["encounters"]:
        where = f"{printable(enc['external_id'] or '-')} from {printable(enc['source'] or '-')}"
        typer.echo(f"  encounter {where}")
    for rec in subject["records"]:
        typer.echo(_record_line(rec))


@app.command()
def restrict(
    external_id: ExternalId,
    restrictions: Annotated[
        SharingRestrictions,
        typer.Option(
            metavar="JSON",
            parser=restrictions_option,
            help='the sharing restrictions, e.g. \'{"asylum_nationality": "SY"}\' or '
            '\'{"peers": ["MY"], "purposes": ["asylum"]}\'; {} lifts them',
        ),
    ],
    record: Annotated[
        str | None,
        typer.Option(help="restrict this record of the subject only (its reference)"),
    ] = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Set the sharing restrictions of every record of a subject, or of one (--record): they
    replace the records' restrictions (not merged with them) and apply to peers' next queries.
    New records can get them as they are enrolled (`POST /gallery/enrol?restrictions=`,
    `bdx gallery load --restrictions`). A record of another subject is not found (exit 4).
    Records being deleted are left as they are; a subject with no other record (being deleted,
    or merged into another) is exit 3 (subject_deleting)."""
    body = restrictions.model_dump(mode="json")
    with _client(token, token_file, url, ca_file, config) as client:
        try:
            if record is None:
                done = client.call(
                    "PUT", _path(external_id) + "/restrictions", json=body, what="the restriction"
                )
                records = done["records"]
            else:
                path = "/records/" + quote(record, safe="") + "/restrictions"
                done = client.call(
                    "PUT", path, json=body, params={"subject": external_id}, what="the restriction"
                )
                records = [done]
        except NodeRequestError as exc:
            if exc.reason == "subject_deleting":  # being deleted, or merged into another
                exc.exit_code = EXIT_CONFLICT
            raise
    if json:
        print_json(done)
        return
    said = printable(json_module.dumps(body, sort_keys=True))
    typer.echo(f"subject {printable(external_id)}: {len(records)} records now restricted {said}")
    for rec in records:
        typer.echo(_record_line(rec))


def _record_line(rec: dict[str, Any]) -> str:
    finger = f" finger {rec['finger_position']}" if rec["finger_position"] else ""
    shared = "never shared (restrictions unreadable)" if rec["restrictions"] is None else ""
    quality = rec["quality"] if rec["quality"] is not None else "-"
    return (
        f"  record {printable(rec['reference'])} {rec['modality']}{finger} quality {quality} "
        f"{rec['state']} {shared}"
    )


def _read_ids(path: Path) -> list[str]:
    """The external ids of an id list (``-``: standard input): one a line, blank lines and
    lines starting with ``#`` skipped, surrounding blanks dropped; each checked as the node
    checks one, the whole list before anything is deleted. Bad contents are exit 3 (bad
    input data, ``bad_id_list``): a bad id, naming its line (and every other bad line's), no
    id at all, or text that is not UTF-8 (a byte order mark first is fine); a list over
    :data:`MAX_ID_LIST_BYTES` is exit 3 too (``file_too_large``), read no further (a device
    or pipe was read without end); a file that cannot be read is exit 4."""
    name = "standard input" if str(path) == "-" else str(path)
    bom = 0  # the length of a UTF-8 byte order mark the file starts with (editors write one)
    try:
        if str(path) == "-":  # over the bound in characters is over it in bytes
            text = sys.stdin.read(MAX_ID_LIST_BYTES + 1) if sys.stdin is not None else ""
            over = len(text) > MAX_ID_LIST_BYTES
            text = text.removeprefix("\ufeff")
        else:
            with path.open("rb") as fh:
                data = fh.read(MAX_ID_LIST_BYTES + 1)
            over = len(data) > MAX_ID_LIST_BYTES
            bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
            text = "" if over else data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NodeRequestError(
            f"{name}: byte {bom + exc.start + 1} is not UTF-8 text; nothing was deleted",
            reason="bad_id_list",
            exit_code=EXIT_BAD_INPUT,
        ) from None
    except OSError as exc:
        raise NodeRequestError(
            f"cannot read the id list {name}: {exc.strerror or type(exc).__name__}",
            reason="no_id_list",
            exit_code=EXIT_NOT_FOUND,
        ) from None
    if over:
        raise NodeRequestError(
            f"{name}: over {MAX_ID_LIST_BYTES} bytes; split the list; nothing was deleted",
            reason="file_too_large",
            exit_code=EXIT_BAD_INPUT,
        )
    ids: list[str] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if not is_external_id(value):
            bad.append(number)
            continue
        ids.append(value)
    if bad:
        shown = ", ".join(str(n) for n in bad[:BAD_LINES_SHOWN])
        more = f" and {len(bad) - BAD_LINES_SHOWN} more" if len(bad) > BAD_LINES_SHOWN else ""
        raise NodeRequestError(
            f"{name}: line {shown}{more}: not an external id (1-{EXTERNAL_ID_CHARS} "
            "characters, no '/', control or invisible characters, no surrounding blanks); "
            "nothing was deleted",
            reason="bad_id_list",
            exit_code=EXIT_BAD_INPUT,
        )
    if not ids:
        raise NodeRequestError(
            f"{name} lists no external id; nothing was deleted",
            reason="bad_id_list",
            exit_code=EXIT_BAD_INPUT,
        )
    return list(dict.fromkeys(ids))


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():  # None: stdin closed (<&-)
        raise NodeRequestError(
            "not run from a terminal: add --yes to delete without confirmation",
            reason="confirmation_needed",
            exit_code=EXIT_USAGE,
        )
    typer.confirm(question, abort=True)


@app.command()
def delete(
    external_id: Annotated[
        str | None, typer.Argument(help="the subject's external id (or give --file)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="delete every subject of this list instead: one external id a line, '-' for "
            "standard input; blank lines and lines starting with '#' are skipped",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Delete a subject and all their records; their templates are then erased from the
    gallery files. Asks first unless --yes (required when not run from a terminal, and with
    --file -). With --file, deletes every subject listed (the list is checked whole first: a
    bad id, or a list that is not UTF-8 text, is exit 3 and nothing is deleted), showing
    progress; ids of no subject are reported (exit 4 when some were, after the others are
    deleted), and an interrupted run can simply be run again."""
    if (external_id is None) == (file is None):
        raise typer.BadParameter("give one external id or --file, not both", param_hint="--file")
    if file is not None:
        _delete_listed(file, yes, _client(token, token_file, url, ca_file, config), json)
        return
    assert external_id is not None
    with _client(token, token_file, url, ca_file, config) as client:
        _confirm(f"Delete subject {external_id} and all their records?", yes)
        done = client.call("DELETE", _path(external_id), what="the deletion")
    if json:
        print_json(done)
    else:
        who = printable(done["external_id"])
        typer.echo(
            f"deleted subject {who}: its {done['templates_removed']} templates are out of every "
            "search and erased from the gallery files at the next erasure round"
        )


def _delete_listed(file: Path, yes: bool, client: NodeClient, json: bool) -> None:
    """``delete --file``: the whole list checked, then sent in :data:`DELETE_CHUNK` ids per
    ``POST /subjects/deletions``."""
    if str(file) == "-" and not yes:
        raise NodeRequestError(
            "the id list is read from standard input: add --yes to delete without confirmation",
            reason="confirmation_needed",
            exit_code=EXIT_USAGE,
        )
    ids = _read_ids(file)
    deleted: list[dict[str, Any]] = []
    not_found: list[str] = []
    with client:
        _confirm(f"Delete the {len(ids)} subjects listed and all their records?", yes)
        with count_progress(json) as progress:
            task = progress.add_task("deleting", total=len(ids))
            for start in range(0, len(ids), DELETE_CHUNK):
                chunk = ids[start : start + DELETE_CHUNK]
                done = client.call(
                    "POST", "/subjects/deletions", json={"external_ids": chunk}, what="the deletion"
                )
                deleted += done["deleted"]
                not_found += done["not_found"]
                progress.advance(task, len(chunk))
    summary = {
        "deleted": len(deleted),
        "templates_removed": sum(d["templates_removed"] for d in deleted),
        "not_found": not_found,
    }
    if json:
        print_json(summary)
    else:
        typer.echo(
            f"deleted {len(deleted)} subjects: their {summary['templates_removed']} templates are "
            "out of every search and erased from the gallery files at the next erasure round"
        )
        for missing in not_found:
            typer.echo(f"no subject {printable(missing)} (never enrolled, or deleted already)")
    if not_found:
        raise typer.Exit(EXIT_NOT_FOUND)


@app.command()
def merge(
    keep: Annotated[str, typer.Argument(help="the subject kept (its external id)")],
    duplicate: Annotated[
        str, typer.Argument(help="the duplicate enrolment merged into it, then removed")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Merge a duplicate enrolment into the subject kept: every record and encounter of
    DUPLICATE becomes KEEP's, hit references issued on DUPLICATE resolve to KEEP, and
    DUPLICATE is removed as a deletion removes a subject (its external id then names nobody).
    Each record keeps its sharing restrictions, so KEEP is shared only as both subjects'
    restrictions allow. Audited as subject.merge. Asks first unless --yes (required when not
    run from a terminal). A subject merged into itself is exit 2, an unknown one exit 4, one
    being enrolled into or deleted exit 3 (nothing merged: try again), a duplicate whose
    templates the gallery lost exit 7."""
    if keep == duplicate:
        raise typer.BadParameter("a subject cannot be merged into itself", param_hint="DUPLICATE")
    with _client(token, token_file, url, ca_file, config) as client:
        _confirm(f"Merge subject {duplicate} into {keep} and remove {duplicate}?", yes)
        try:
            done = client.call(
                "POST", _path(keep) + "/merge", json={"duplicate": duplicate}, what="the merge"
            )
        except NodeRequestError as exc:
            if exc.reason in ("subject_busy", "subject_deleted"):
                exc.exit_code = EXIT_CONFLICT
            elif exc.reason == "same_subject":
                exc.exit_code = EXIT_USAGE
            elif exc.reason == "missing_from_gallery":  # the gallery lost data (README: 7)
                exc.exit_code = EXIT_STORAGE
            raise
    if json:
        print_json(done)
        return
    typer.echo(
        f"merged subject {printable(done['duplicate'])} into {printable(done['keep'])}: "
        f"{done['records']} records and {done['encounters']} encounters moved, "
        f"{done['hit_references']} hit references now resolve to {printable(done['keep'])}"
    )


def _external_id_option(value: str) -> str:
    """A new external id the node would take (its 422 would be exit 3, not a usage error)."""
    if not is_external_id(value):
        raise typer.BadParameter(
            f"not an external id (1-{EXTERNAL_ID_CHARS} characters, no '/', control or "
            "invisible characters, no surrounding blanks)"
        )
    return value


@app.command()
def rename(
    old: Annotated[str, typer.Argument(help="the subject's external id now")],
    new: Annotated[
        str,
        typer.Argument(
            parser=_external_id_option, help="its new external id: one that never named a subject"
        ),
    ],
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Give a subject a new external id (a corrected file number). Its records, encounters
    and hit references stay its own; OLD then names nobody and no rename gives it again, and
    NEW must never have named a subject (renamed, merged or deleted ones included): else exit 3
    (external_id_used), nothing renamed; so is a subject being enrolled into or deleted
    (subject_busy). Audited as subject.rename. An unknown OLD is exit 4."""
    if old == new:
        raise typer.BadParameter("the new external id is the old one", param_hint="NEW")
    with _client(token, token_file, url, ca_file, config) as client:
        try:
            done = client.call(
                "PUT", _path(old) + "/external-id", json={"external_id": new}, what="the rename"
            )
        except NodeRequestError as exc:
            if exc.reason in ("external_id_used", "subject_busy"):
                exc.exit_code = EXIT_CONFLICT
            raise
    if json:
        print_json(done)
        return
    typer.echo(f"renamed subject {printable(done['previous'])} to {printable(done['external_id'])}")


@app.command("reference")
def reference_(
    reference: Reference,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Resolve a hit reference this node gave a peer, for the formal follow-up: the subject,
    the query and requesting country, when it was issued and the subject's state now (deleted:
    erased since). Every resolution is recorded in the audit trail; one this node never issued
    is not found (exit 4)."""
    with _client(token, token_file, url, ca_file, config) as client:
        hit = client.call("GET", "/hits/" + quote(reference, safe=""), what="the resolution")
    if json:
        print_json(hit)
        return
    typer.echo(
        f"reference {printable(hit['reference'])}: hit on query {printable(hit['query_id'])} "
        f"of {printable(hit['requester'])}, issued {hit['issued_at']}"
    )
    if hit["state"] == "deleted":
        typer.echo("subject deleted since the hit: nothing is left to disclose")
        return
    typer.echo(f"subject {printable(hit['subject'])} ({hit['state']})")
    typer.echo(_outcome_line(hit))
    for rec in hit["records"]:
        typer.echo(_record_line(rec))


def _outcome_filter(outcome: OutcomeState | None) -> dict[str, str]:
    """The listing's ``outcome`` parameter: none when not asked (any outcome)."""
    return {} if outcome is None else {"outcome": outcome.value}


def _outcome_line(hit: dict[str, Any]) -> str:
    if hit["outcome"] == "pending":
        return "outcome pending (none recorded)"
    note = f": {printable(hit['note'])}" if hit["note"] else ""
    by = printable(hit["outcome_by"])
    return f"outcome {hit['outcome']} (recorded {hit['outcome_at']} by {by}){note}"


def _note_option(value: str | None) -> str | None:
    """A note the node would take: 1 to NOTE_CHARS characters of plain text (no control or
    invisible characters), not blank."""
    if value is None:
        return None
    plain = re.fullmatch(LABEL_PATTERN, value) is not None and bool(value.strip())
    if not 1 <= len(value) <= NOTE_CHARS or not plain:
        raise typer.BadParameter(
            f"must be 1-{NOTE_CHARS} characters of plain text (no control or invisible "
            "characters, not blank)"
        )
    return value


@app.command("outcome")
def outcome(
    reference: Reference,
    confirmed: Annotated[
        bool, typer.Option("--confirmed", help="the examiner confirmed the match")
    ] = False,
    not_confirmed: Annotated[
        bool, typer.Option("--not-confirmed", help="the examiner rejected it: a false hit")
    ] = False,
    withdrawn: Annotated[
        bool,
        typer.Option("--withdrawn", help="the requesting country withdrew its follow-up"),
    ] = False,
    note: Annotated[
        str | None,
        typer.Option(
            parser=_note_option,
            help=f"a short note (up to {NOTE_CHARS} characters: a file number, why); it is "
            "copied into the audit trail, so never personal data. It replaces the earlier "
            "note: left out, an earlier one is cleared",
        ),
    ] = None,
    expect: Annotated[
        OutcomeState | None,
        typer.Option(
            help="record only if the outcome stored is still this one (pending: none "
            "recorded); another stored meanwhile is a conflict (exit 3, outcome_changed)",
        ),
    ] = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Record the forensic examiner's outcome of a hit's follow-up (one of --confirmed,
    --not-confirmed, --withdrawn), replacing one recorded before. Each recording is in the
    audit trail (hit.outcome) with the outcome it replaced. A reference this node never issued
    or no longer keeps is not found (exit 4); one whose subject is deleted, or being deleted,
    is a conflict (exit 3): its follow-up is over. With --expect, so is an outcome stored
    other than the one expected (exit 3, outcome_changed): nothing is recorded."""
    chosen = [
        o
        for o, given in (
            (HitOutcome.CONFIRMED, confirmed),
            (HitOutcome.NOT_CONFIRMED, not_confirmed),
            (HitOutcome.WITHDRAWN, withdrawn),
        )
        if given
    ]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one outcome", param_hint="--confirmed / --not-confirmed / --withdrawn"
        )
    body: dict[str, Any] = {"outcome": chosen[0].value, "note": note}
    if expect is not None:
        body["expected"] = expect.value
    path = "/hits/" + quote(reference, safe="") + "/outcome"
    with _client(token, token_file, url, ca_file, config) as client:
        try:
            done = client.call("PUT", path, json=body, what="the outcome")
        except NodeRequestError as exc:
            if exc.reason in ("subject_deleted", "subject_deleting", "outcome_changed"):
                exc.exit_code = EXIT_CONFLICT
            raise
    if json:
        print_json(done)
        return
    typer.echo(
        f"reference {printable(done['reference'])} (query {printable(done['query_id'])} of "
        f"{printable(done['requester'])}): {_outcome_line(done)}, was {done['previous']}"
    )


def _cursor_option(value: str | None) -> str | None:
    """A cursor of the hit listings, checked here as the node checks it (its 422 bad_cursor
    was exit 3: a usage error)."""
    if value is None:
        return None
    try:
        HitCursor.decode(value)
    except BadCursorError:
        raise typer.BadParameter(
            f"{printable(value)} is not a cursor of this listing (give the next_after a page "
            "printed)"
        ) from None
    return value


@app.command("hits")
def hits(
    external_id: ExternalId,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="hits to show (one page)")
    ] = PAGE_DEFAULT,
    after: Annotated[
        str | None,
        typer.Option(
            parser=_cursor_option, help="continue after this cursor (the last page's next_after)"
        ),
    ] = None,
    offset: Annotated[
        int,
        typer.Option(
            min=0,
            help="hits to skip (after --after, when given); deprecated: use --after, as an "
            "offset skips hits when recorded outcomes move them out of --outcome",
        ),
    ] = 0,
    outcome: Annotated[
        OutcomeState | None,
        typer.Option(
            help="only the hits whose follow-up stands so (pending: no outcome recorded)",
        ),
    ] = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    url: UrlOption = None,
    ca_file: CaFileOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """List the hits this node answered on a subject and still keeps (hit_reference_days),
    oldest first: the reference, the requesting country, when it was issued, the query and
    the follow-up's outcome (pending: none recorded), for a data subject's access request or
    the data-protection officer. A page continues with the --after the last one printed
    (stderr), so that recording outcomes while working through --outcome pending skips none.
    Every listing is recorded in the audit trail; a subject not enrolled (deleted, or never)
    is not found (exit 4)."""
    params: dict[str, Any] = {"limit": limit, "offset": offset, **_outcome_filter(outcome)}
    if after is not None:
        params["after"] = after
    with _client(token, token_file, url, ca_file, config) as client:
        page = client.call("GET", _path(external_id) + "/hits", params=params, what="the listing")
    if json:
        print_json(page)
        return
    if not page["items"] and after is None and offset == 0:
        if outcome is None:
            typer.echo(f"no hits kept for subject {printable(external_id)}")
        else:  # it may have others
            typer.echo(f"no hits kept for subject {printable(external_id)} are {outcome.value}")
    for item in page["items"]:
        typer.echo(
            f"{printable(item['reference'])}\t{printable(item['requester'])}\t"
            f"{item['issued_at']}\tquery {printable(item['query_id'])}\t{item['outcome']}"
        )
    if page["next_after"] is not None:
        more = [f"bdx subjects hits {printable(external_id)}"]
        if limit != PAGE_DEFAULT:
            more.append(f"--limit {limit}")
        if outcome is not None:
            more.append(f"--outcome {outcome.value}")
        more.append(f"--after {printable(page['next_after'])}")
        typer.echo(f"more: {' '.join(more)}", err=True)
