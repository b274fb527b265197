"""Commands that speak to the local node's HTTP API with a user's token.

``bdx query`` (officers) and ``bdx subjects`` (operators) work on a running node, which holds
the gallery and the keys, so the user's machine needs neither. The node's URL defaults to the
settings' host/port (https when ``tls_cert_file`` is set); ``--ca-file`` names the CA bundle
that signed the node's certificate. The node's refusals become exit codes (README, "Exit
codes"): 2 no token given, 3 bad input, 4 not found, 5 refused (token or role, or the node's
certificate does not verify), 6 node unreachable, unavailable or not answering in time, 7 the
node's storage failed (a 503 ``storage_error``: its gallery; ``database_unavailable``: its
database), 1 otherwise.
"""

from __future__ import annotations

import io
import ssl
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from matcher.readfile import open_regular
from node.cli._common import printable, read_input, warn
from node.errors import NodeError
from node.service_errors import (
    DatabaseUnavailableError,
    InvalidRequestError,
    StoreUnavailableError,
)
from node.settings import load_settings

#: Where this command's token and token file came from ("COMMANDLINE", "ENVIRONMENT", ...):
#: an option typed on the command line wins over a variable the shell exports.
_SOURCES: ContextVar[dict[str, str]] = ContextVar("token_sources")


def _source(ctx: typer.Context, name: str, value: object) -> None:
    """Note where option ``name`` came from. (Compared by name: typer runs its own copy of
    click's ``ParameterSource``.)"""
    source = ctx.get_parameter_source(name)
    given = source.name if value and source is not None else ""
    _SOURCES.set({**_SOURCES.get({}), name: given})


def _token_typed(ctx: typer.Context, value: str | None) -> str | None:
    """A token typed on the command line is in ``ps`` and /proc for every local user (and in
    the shell's history) while the command waits: say so, once, on standard error."""
    _source(ctx, "token", value)
    if value and _SOURCES.get()["token"] == "COMMANDLINE":
        warn(
            "--token on the command line is visible to other users of this machine (ps); "
            "use BDX_TOKEN or --token-file"
        )
    return value


def _token_file_given(ctx: typer.Context, value: Path | None) -> Path | None:
    _source(ctx, "token_file", value)
    return value


#: The variables of ``--token`` and ``--token-file`` (``bdx serve`` knows them as no setting's).
TOKEN_ENV = "BDX_TOKEN"
TOKEN_FILE_ENV = "BDX_TOKEN_FILE"

TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar=TOKEN_ENV,
        callback=_token_typed,
        help="your API token; prefer BDX_TOKEN or --token-file (a typed one shows in ps)",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar=TOKEN_FILE_ENV,
        callback=_token_file_given,
        help="file holding your API token (its first line), or BDX_TOKEN_FILE; an option on "
        "the command line wins over BDX_TOKEN / BDX_TOKEN_FILE",
    ),
]


def chosen_token(token: str | None, token_file: Path | None) -> str | None:
    """The token to use: one given on the command line (``--token`` or ``--token-file``)
    over one from the environment, ``BDX_TOKEN`` over ``BDX_TOKEN_FILE``; both options on the
    command line are a usage error."""
    if token and token_file is not None:
        sources = _SOURCES.get({})
        typed = sources.get("token") == "COMMANDLINE"
        file_typed = sources.get("token_file") == "COMMANDLINE"
        if typed and file_typed:
            raise NodeRequestError(
                "give --token or --token-file, not both", reason="usage", exit_code=EXIT_NO_TOKEN
            )
        return read_token(token_file) if file_typed else token
    if not token and token_file is not None:
        return read_token(token_file)
    return token


UrlOption = Annotated[str | None, typer.Option(help="node API URL (default: from settings)")]
CaFileOption = Annotated[
    Path | None,
    typer.Option(help="CA bundle (PEM, or DER) that signed the node API's certificate"),
]

#: Exit code of an HTTP status from the node (others: 1, an unexpected failure).
EXIT_OF_STATUS = {400: 3, 413: 3, 422: 3, 401: 5, 403: 5, 404: 4, 503: 6}
#: Exit code of a node's 503 by its error: its storage failed, as the same failure is in a
#: command on the node's machine (README: 7), not a node that is away or busy (6: a proxy's
#: 503, ``database_busy``: try again later).
EXIT_OF_UNAVAILABLE = {
    "storage_error": StoreUnavailableError.exit_code,  # the gallery's files
    DatabaseUnavailableError.default_reason: DatabaseUnavailableError.exit_code,
}
#: Exit code when the node cannot be reached at all.
EXIT_UNREACHABLE = 6
#: Exit code when the node's TLS certificate does not verify (README: a certificate's
#: verification failed): another CA, another host name, expired; not a node that is down.
EXIT_CERTIFICATE_REFUSED = 5
#: Exit code when no token was given.
EXIT_NO_TOKEN = 2
#: Exit code of a --url that is no http(s) URL (README: usage error).
EXIT_BAD_URL = 2
#: Largest --ca-file read: a whole system bundle is about 250 KB; a bigger file is not one.
MAX_CA_FILE_BYTES = 4 * 1024 * 1024
#: Longest token-file line read (tokens are about 50 characters; a wrong file is not slurped).
MAX_TOKEN_FILE_CHARS = 4096
#: Seconds to open a connection to the node: it is local or on the agency's network, so a
#: node that does not accept within this is down, however long its answer may take.
CONNECT_TIMEOUT_S = 10.0


class NodeRequestError(NodeError):
    """The local node refused or could not run a request; ``exit_code`` follows its answer."""

    default_reason = "node_request_failed"

    def __init__(self, message: str, *, reason: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message, reason=reason)
        self.exit_code = exit_code


def read_token(path: Path) -> str:
    """The first line of ``path``, stripped; a one-line error when it cannot be read. A FIFO
    or device is refused at once (:func:`open_regular`: one with no writer was waited on
    forever); no more than :data:`MAX_TOKEN_FILE_CHARS` of the line is read."""
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8") as fh:
            return fh.readline(MAX_TOKEN_FILE_CHARS).strip()
    except UnicodeDecodeError:  # its message would quote a byte of the secret
        why = "not UTF-8 text"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise NodeRequestError(
        f"cannot read the token file {path}: {why}", reason="no_token", exit_code=EXIT_NO_TOKEN
    )


class NodeClient:
    """One user's requests to the local node; use as a context manager."""

    def __init__(
        self,
        *,
        token: str | None,
        url: str | None,
        ca_file: Path | None,
        config: Path | None,
        timeout_s: float,
        role: str,
        token_file: Path | None = None,
    ) -> None:
        token = chosen_token(token, token_file)
        if not token:
            raise NodeRequestError(
                f"an {role} token is needed (BDX_TOKEN, --token-file or --token)",
                reason="no_token",
                exit_code=EXIT_NO_TOKEN,
            )
        self.base = _checked_url((url or _default_url(config)).rstrip("/"))
        verify: ssl.SSLContext | bool = _ca_context(ca_file) if ca_file else True
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
            verify=verify,
            headers={"Authorization": f"Bearer {token}"},
        )

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """Send one request; return the JSON body of a 2xx answer, else raise
        :class:`NodeRequestError` saying that the node refused ``what``."""
        try:
            response = self._http.request(method, self.base + path, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:  # connected: it is up, but slow
            raise NodeRequestError(
                f"the node at {self.base} did not answer {what} within {self.timeout_s:g} s",
                reason="node_timeout",
                exit_code=EXIT_UNREACHABLE,
            ) from exc
        except httpx.ConnectError as exc:
            refused = _certificate_refusal(exc)
            if refused is None:
                raise NodeRequestError(
                    f"cannot reach the node at {self.base}: {exc}",
                    reason="node_unreachable",
                    exit_code=EXIT_UNREACHABLE,
                ) from None
            why = str(refused.verify_message).rstrip(".")
            raise NodeRequestError(
                f"the node at {self.base} presented a certificate that does not verify: {why} "
                "(is --ca-file the CA that signed it, and the URL's host one it names?)",
                reason="node_certificate_refused",
                exit_code=EXIT_CERTIFICATE_REFUSED,
            ) from None
        except httpx.HTTPError as exc:
            raise NodeRequestError(
                f"cannot reach the node at {self.base}: {exc}",
                reason="node_unreachable",
                exit_code=EXIT_UNREACHABLE,
            ) from None
        if not response.is_success:
            try:
                err = response.json()
                reason, detail = str(err.get("error", "")), str(err.get("detail", ""))
            except (ValueError, AttributeError):
                reason, detail = "", response.text[:200]
            said = printable(detail or response.reason_phrase)
            code = EXIT_OF_STATUS.get(response.status_code, 1)
            if response.status_code == 503 and reason in EXIT_OF_UNAVAILABLE:
                raise NodeRequestError(
                    f"the node's storage failed during {what}: {said}",
                    reason=reason,
                    exit_code=EXIT_OF_UNAVAILABLE[reason],
                )
            raise NodeRequestError(
                f"the node refused {what}: {said}",
                reason=reason or f"http_{response.status_code}",
                exit_code=code,
            )
        try:
            return response.json()
        except ValueError:  # another server at that URL, or a proxy's page
            raise NodeRequestError(
                f"{self.base} answered {what} with something other than JSON: is it a bdx node?",
                reason="bad_answer",
                exit_code=EXIT_UNREACHABLE,
            ) from None


def _certificate_refusal(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure under ``exc`` (httpx wraps httpcore's error,
    which wraps the ssl module's), if a failed verification is why it could not connect."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _checked_url(url: str) -> str:
    """``url`` when it is an http or https URL with a host; else a one-line usage error (an
    unparsable one raised httpx.InvalidURL, a traceback; another scheme was "unreachable")."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        why = str(exc)
    else:
        if parsed.scheme in ("http", "https") and parsed.host:
            return url
        why = "give http:// or https:// and a host"
    raise NodeRequestError(
        f"bad node URL {printable(url)}: {why}", reason="bad_url", exit_code=EXIT_BAD_URL
    )


def _ca_context(ca_file: Path) -> ssl.SSLContext:
    """A TLS context trusting the certificates of ``ca_file`` (PEM, or one DER certificate)
    or, for a folder, those of ``c_rehash`` names in it: exit 4 when it does not exist, 3 when
    it cannot be read or holds no certificate."""
    if ca_file.is_dir():
        return ssl.create_default_context(capath=str(ca_file))
    data = read_input(ca_file, "CA file", max_bytes=MAX_CA_FILE_BYTES)
    try:
        if data:  # an empty cadata is no cadata: the system's CAs would be trusted
            cadata: str | bytes = data.decode("ascii") if data.isascii() else data
            return ssl.create_default_context(cadata=cadata)
    except ssl.SSLError:
        pass
    raise InvalidRequestError(
        f"the CA file {ca_file} holds no PEM or DER certificate", reason="bad_ca_file"
    )


def _default_url(config: Path | None) -> str:
    settings = load_settings(config, check=False)
    scheme = "https" if settings.tls_cert_file else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6
    return f"{scheme}://{host}:{settings.port}"
