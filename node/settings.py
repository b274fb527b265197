"""Node settings: environment variables (prefix ``BDX_``) over an optional config file.

Precedence, highest first: keyword arguments, ``BDX_*`` environment variables, the config file
(``--config PATH`` or ``BDX_CONFIG``: TOML when the name ends in ``.toml``, any case, else a dotenv
file of ``BDX_*`` lines only; a file that sets nothing is refused), defaults. The defaults give a
zero set-up development node: an embedded SQLite database and the gallery under ``./var``.
A relative path in the config file is taken from the file's folder (:class:`_FromConfigFile`);
a path setting that starts with ``~`` or ``~user`` names that home folder, from any source.

Outside development, :meth:`Settings.check_safe` refuses the defaults that are only fit for a
laptop (no TLS, debug, ``*`` CORS, a private-use country code, database or key files other
users can read, a ``pki_dir`` or rules file others can write, the CA's key in ``pki_dir``);
:func:`load_settings` calls it, so no command runs on an unsafe production configuration.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tomllib
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv.parser import Binding, parse_stream
from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from certs.translog.params import MIN_RETENTION_DAYS
from matcher.readfile import FileTooLargeError, read_bounded
from node.countries import USER_ASSIGNED, normalise_country
from node.errors import ConfigError

CountryCode = Annotated[str, AfterValidator(normalise_country)]

#: Largest config file read: a node's settings are a few dozen lines; a bigger file is none
#: (/dev/zero was read without end) and is read no further (``file_too_large``).
MAX_CONFIG_FILE_BYTES = 1 << 20
#: Permission bits that let users other than the owner read or write a file.
_OTHERS_RW = stat.S_IRWXG | stat.S_IRWXO
_OTHERS_W = stat.S_IWGRP | stat.S_IWOTH

_toml_file: ContextVar[Path | None] = ContextVar("bdx_toml_file", default=None)
_env_config_file: ContextVar[Path | None] = ContextVar("bdx_env_config_file", default=None)


class Settings(BaseSettings):
    """Everything a node needs to start; see the module docstring for sources."""

    model_config = SettingsConfigDict(env_prefix="BDX_", extra="forbid", frozen=True)

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe settings at start-up"
    )
    country: CountryCode = Field("XX", description="ISO 3166-1 alpha-2 code of this node")
    data_dir: Path = Field(
        Path("var"), description="the node's state: database, gallery, keys' records"
    )
    database_url: str | None = Field(None, description="default: SQLite file in data_dir")
    gallery_dir: Path | None = Field(None, description="default: data_dir/gallery")
    host: str = Field("127.0.0.1", description="address the API listens on")
    port: int = Field(8443, ge=1, le=65535, description="port of the API")
    tls_cert_file: Path | None = Field(None, description="the API's TLS certificate (PEM)")
    tls_key_file: Path | None = Field(None, description="its private key (PEM)")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API"
    )
    debug: bool = Field(False, description="debug logging and error pages (not in production)")
    # Images are a few hundred KiB; 10 MiB leaves room for lossless 1000 ppi captures. A body is
    # held in memory while it is read: at most 256 MiB keeps a few concurrent ones in RAM.
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, gt=0, le=256 * 1024 * 1024, description="largest image upload, bytes"
    )
    # JSON bodies carry ids and restrictions only; 1 MiB is generous and bounds parsing work
    # (at most 64 MiB: a parsed JSON body takes several times its size in Python objects).
    max_json_bytes: int = Field(
        1024 * 1024, gt=0, le=64 * 1024 * 1024, description="largest JSON body, bytes"
    )
    search_fmr: float = Field(
        1e-4,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="FMR target of one comparison in a 1:N search",
    )
    # A stranger's search compares the probe with every record: at 1e-4 per comparison a gallery
    # of 10,000 records would give a false hit to 63 % of strangers. 1 % is the FPIR that NIST's
    # identification evaluations (FpVTE, FRVT 1:N) report investigative systems at.
    search_fpir: float = Field(
        1e-2,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="FPIR target of a 1:N search (local and peers' queries): the share of "
        "searches for a person not in the gallery that may hit; each comparison is held to the "
        "stricter of search_fmr and the FMR giving this FPIR at the gallery's size",
    )
    worker_threads: int = Field(4, ge=1, le=256, description="threads for CPU-bound work")
    # Peer queries are CPU-bound (verification, probe preparation, search), so more threads than
    # cores only add GIL and scheduler hand-offs: on 2 cores, 2 threads answered 55-60 queries/s
    # against a 10,000-record gallery where 4 answered 48 and 8 answered 40 (benchmarks/README).
    peer_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="threads answering peer queries (default: CPUs, or 2 per search process)",
    )
    # Searches in worker processes run on every core: one process's Python work (request path
    # and the search's own steps) holds one interpreter lock (node.services.search_pool).
    search_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="worker processes for peer fingerprint searches (0: in the peer threads)",
    )
    # A deletion only tombstones a record; its template stays in the gallery files until the
    # segment holding it is rewritten (node.services.erasure). Erasing one record of a
    # 32,768-record fingerprint segment rewrites it in about 1.2 s here (benchmarks/README.md),
    # searches going on: under 10 s, steady deletions would keep a core rewriting (1e-6 s made a
    # busy loop). Over a day, a deleted template would outlive the promise of erasure.
    gallery_erase_interval_s: float = Field(
        300.0,
        ge=10,
        le=86400,
        allow_inf_nan=False,
        description="deleted records' templates leave the gallery files within this many seconds",
    )
    # Ten years at most: an unbounded value overflowed the expiry date (100,000,000 days), and
    # a longer-lived bearer token is no token policy (README: 365 by default, 3650 at most).
    token_max_days: int = Field(
        365, ge=1, le=3650, description="longest lifetime of an API token (at most 10 years)"
    )
    # Peer exchange (node.exchange.setup): off unless pki_dir and policy_file are set.
    pki_dir: Path | None = Field(None, description="region folder of `bdx pki bootstrap`")
    pki_passphrase_file: Path | None = Field(None, description="passphrase of the node keys")
    policy_file: Path | None = Field(None, description="exchange rules (TOML, `bdx policy`)")
    peers: dict[CountryCode, str] = Field(default_factory=dict, description="country -> URL")
    hit_secret_file: Path | None = Field(None, description="default: data_dir/hit-secret.key")
    # The reference -> subject link of each hit is personal data kept for the requester's
    # follow-up through formal channels, and for no longer. Two years covers a follow-up that
    # waits on a court or an asylum procedure; the forum's agreement sets the real period.
    hit_reference_days: int = Field(
        730,
        ge=1,
        le=3650,
        description="a hit reference can be followed up for this many days, then its link to "
        "the subject is deleted",
    )
    # Prüm: data logged about exchanges is deleted after two years. The exchange log's entries
    # and the audit trail's events older than this are deleted (the log keeps each entry's
    # leaf hash, so it stays verifiable); at least hit_reference_days (a resolved hit's
    # entries must outlive its follow-up), at most 100 years (a node that keeps them). Not
    # set, it is the larger of 730 and hit_reference_days, so a node that follows hits up for
    # longer keeps working after an upgrade. At least certs.translog.params.MIN_RETENTION_DAYS
    # (a year, for the yearly review of the data-protection authority), which the log's own
    # pruning and audit enforce too.
    exchange_log_days: int = Field(
        730,
        ge=MIN_RETENTION_DAYS,
        le=36500,
        description="exchange log entries and audit trail events are deleted after this many "
        f"days (at least {MIN_RETENTION_DAYS} and hit_reference_days; default: the larger of "
        "730 and "
        "hit_reference_days)",
    )
    replay_window_s: int = Field(
        300,
        ge=10,
        le=3600,
        description=(
            "accepted clock difference to peers: query freshness and reply times"
            " (witness cosignatures keep 300 s)"
        ),
    )
    # A query is a TLS handshake, a search and a signed reply: under 1 s every peer would time out.
    peer_timeout_s: float = Field(
        30.0, ge=1, le=300, allow_inf_nan=False, description="deadline of a peer query"
    )
    peer_host: str | None = Field(None, description="peer listener address (default: host)")
    peer_port: int = Field(8444, ge=1, le=65535, description="mutual-TLS peer listener port")
    # Every checkpoint is a signature and one witness request per peer: 1e-6 s signed 1,415 in
    # 15 s and sent 2,828 requests. 10 s bounds that to 6 a minute per peer; over a day, the
    # log's newest entries would go unsigned and unwitnessed too long.
    checkpoint_interval_s: float = Field(
        300.0,
        ge=10,
        le=86400,
        allow_inf_nan=False,
        description="seconds between exchange log checkpoints (sooner when the log grew)",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_homes(cls, data: Any) -> Any:
        """A leading ``~`` or ``~user`` in a path setting from the environment or a keyword
        (a config file's were expanded as it was read), judged on the text as given: a
        path type would have turned ``./~/x``, a folder named ``~``, into ``~/x``."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            if name in _PATH_FIELDS and isinstance(value, str) and value.startswith("~"):
                out[name] = _home_or_refuse(name, value)
            elif name == "database_url" and isinstance(value, str):
                out[name] = _sqlite_from(value, lambda raw: _home_or_refuse("database_url", raw))
        return out

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            # uvicorn served plain HTTP with a key alone, and failed with a traceback on a
            # certificate alone
            raise PydanticCustomError(
                "tls_pair", "tls_cert_file and tls_key_file are set together or not at all"
            )
        if self.exchange_enabled and self.port == self.peer_port and _same_host(self):
            raise PydanticCustomError(
                "same_port",
                "port and peer_port are both {port}: the API and the peer listener need one each",
                {"port": self.port},
            )
        if "exchange_log_days" not in self.model_fields_set:
            days = type(self).model_fields["exchange_log_days"].default
            object.__setattr__(self, "exchange_log_days", max(days, self.hit_reference_days))
        if self.exchange_log_days < self.hit_reference_days:
            # a resolved hit's hit.resolve entry would go while its reference is still followed up
            raise PydanticCustomError(
                "retention_too_short",
                "exchange_log_days ({days}) is below hit_reference_days ({follow_up}): the log "
                "must keep a hit's entries for its whole follow-up period",
                {"days": self.exchange_log_days, "follow_up": self.hit_reference_days},
            )
        if self.gallery_dir is None:
            object.__setattr__(self, "gallery_dir", self.data_dir / "gallery")
        if self.database_url is None:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'bdx.sqlite3'}")
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None  # filled by the validator
        return self.database_url

    @property
    def exchange_enabled(self) -> bool:
        return self.pki_dir is not None and self.policy_file is not None

    @property
    def gallery_path(self) -> Path:
        assert self.gallery_dir is not None  # filled by the validator
        return self.gallery_dir

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the database is SQLite on disk, else ``None``."""
        prefix = "sqlite:///"
        url = self.db_url.split("?", 1)[0]
        if not url.startswith("sqlite") or url.endswith(":memory:") or prefix not in url:
            return None
        return Path(url.split(prefix, 1)[1])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        toml = _toml_file.get()
        if toml is not None:
            toml_source = TomlConfigSettingsSource(settings_cls, toml_file=toml)
            sources.append(_FromConfigFile(toml_source, toml.parent))
        else:
            env_file = _env_config_file.get()
            folder = env_file.parent if env_file is not None else Path()
            sources.append(_FromConfigFile(dotenv_settings, folder))
        return tuple(sources)

    def unsafe_reasons(self) -> list[str]:
        """What makes these settings unfit for production (empty in development)."""
        if self.environment == "development":
            return []
        problems: list[str] = []
        problems += _tls_problems(self)
        if self.debug:
            problems.append("debug must be off")
        if "*" in self.cors_origins:
            problems.append("cors_origins must list origins, not '*'")
        if self.country in USER_ASSIGNED:
            problems.append(f"country {self.country} is a private-use code, not a real country")
        problems += _file_mode_problems(self)
        problems += _pki_problems(self)
        if self.peers and (self.pki_dir is None or self.policy_file is None):
            problems.append("a node with peers needs pki_dir and policy_file")
        plain = sorted(
            cc for cc, url in self.peers.items() if not url.lower().startswith("https://")
        )
        if plain:
            # A query carries the probe's template: it travels over mutual TLS or not at all.
            problems.append(f"peer URLs must be https:// ({', '.join(plain)})")
        return problems

    def check_safe(self) -> None:
        """Raise :class:`ConfigError` (reason ``unsafe_config``) listing every refusal."""
        problems = self.unsafe_reasons()
        if problems:
            raise ConfigError(
                f"refusing {self.environment} settings: " + "; ".join(problems),
                reason="unsafe_config",
            )


#: Addresses that listen on every interface, so on any port another listener of the host uses.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def _same_host(settings: Settings) -> bool:
    """Whether the API and the peer listener would bind one address (``bdx serve`` finds the
    rest, e.g. ``localhost`` and ``127.0.0.1``, when it binds)."""
    peer_host = settings.peer_host if settings.peer_host is not None else settings.host
    hosts = {settings.host.lower(), peer_host.lower()}
    return len(hosts) == 1 or bool(hosts & _WILDCARD_HOSTS)


def _tls_problems(settings: Settings) -> list[str]:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return ["tls_cert_file and tls_key_file are required"]
    problems = [
        f"{name} {path} does not exist"
        for name, path in (
            ("tls_cert_file", settings.tls_cert_file),
            ("tls_key_file", settings.tls_key_file),
        )
        if not path.is_file()
    ]
    if not problems and settings.tls_key_file.stat().st_mode & _OTHERS_RW:
        problems.append(f"tls_key_file {settings.tls_key_file} is readable by other users")
    return problems


def _file_mode_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    db_file = settings.sqlite_path
    if db_file is not None and db_file.exists() and db_file.stat().st_mode & _OTHERS_RW:
        problems.append(f"database file {db_file} is accessible to other users (chmod 600)")
    if settings.data_dir.exists() and settings.data_dir.stat().st_mode & _OTHERS_W:
        problems.append(f"data_dir {settings.data_dir} is writable by other users")
    gallery = settings.gallery_path
    if gallery.exists() and gallery.stat().st_mode & stat.S_IRWXO:  # the node makes it 0700
        problems.append(f"gallery_dir {gallery} (the templates) is open to other users")
    secrets = {
        "pki_passphrase_file": settings.pki_passphrase_file,
        "hit_secret_file": settings.hit_secret_file or settings.data_dir / "hit-secret.key",
    }
    for name, path in secrets.items():
        if path is not None and path.is_file() and path.stat().st_mode & _OTHERS_RW:
            problems.append(f"{name} {path} is readable by other users (chmod 600)")
    return problems


def _pki_problems(settings: Settings) -> list[str]:
    """``pki_dir`` (layout of ``bdx pki bootstrap``) and the rules file: private keys owner-only,
    nothing others can write, and no CA key (it stays with the CA, README "Operating a node")."""
    problems: list[str] = []
    rules = settings.policy_file
    if rules is not None and _visible(rules) and rules.stat().st_mode & _OTHERS_W:
        problems.append(f"policy_file {rules} is writable by other users")
    pki = settings.pki_dir
    if pki is None or not _visible(pki):
        return problems
    files = _pki_files(pki)
    writable = [f for f in files if f.stat().st_mode & _OTHERS_W]
    if writable:
        names = ", ".join(_in_pki(f, pki) for f in writable)
        problems.append(f"pki_dir {pki}: {names} writable by other users")
    keys = [f for f in files if f.suffix == ".key" and f.stat().st_mode & _OTHERS_RW]
    if keys:
        names = ", ".join(_in_pki(f, pki) for f in keys)
        problems.append(f"pki_dir {pki}: private keys {names} readable by other users (chmod 600)")
    if _visible(pki / "ca" / "ca.key"):
        problems.append(f"pki_dir {pki} holds the CA's key ca/ca.key (it stays with the CA)")
    return problems


def _pki_files(pki: Path) -> list[Path]:
    """``pki_dir`` itself and what a node reads there: root, trust list, CRL, ``nodes/*/*``
    (not a walk of the tree: ``pki_dir`` may be a big folder by mistake)."""
    found = [pki, pki / "root.pem", pki / "trust-list.jws", pki / "crl.pem", pki / "nodes"]
    for folder in _listing(pki / "nodes"):
        found += [folder, *_listing(folder)]
    return [f for f in found if _visible(f)]


def _listing(folder: Path) -> list[Path]:
    """What ``folder`` holds, sorted; nothing when it is no folder or this user cannot list it
    (what the node cannot read, it cannot give away either)."""
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _visible(path: Path) -> bool:
    """Whether ``path`` exists as far as this user can tell (``Path.exists`` raises when a
    folder on the way cannot be searched, e.g. docker-compose's hidden ``/pki/ca``)."""
    try:
        path.stat()
    except OSError:
        return False
    return True


def _in_pki(path: Path, pki: Path) -> str:
    return "the folder itself" if path == pki else str(path.relative_to(pki))


class _FromConfigFile(PydanticBaseSettingsSource):
    """A config file's values, with its relative paths taken from the file's folder.

    ``data_dir = "state"`` in ``/etc/bdx/node.toml`` means ``/etc/bdx/state`` whatever folder
    ``bdx`` runs in (a service manager's working directory is rarely the config's), as a
    relative SQLite ``database_url`` does. Paths from the environment and keyword arguments
    stay relative to the working directory, as any command-line path.
    """

    def __init__(self, source: PydanticBaseSettingsSource, folder: Path) -> None:
        super().__init__(source.settings_cls)
        self._source = source
        self._folder = folder

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._source()
        for name, value in data.items():
            if name in _PATH_FIELDS and isinstance(value, str | Path) and str(value):
                data[name] = self._from_folder(name, str(value))
            elif name == "database_url" and isinstance(value, str):
                data[name] = _sqlite_from(value, lambda raw: self._from_folder("database_url", raw))
        return data

    def _from_folder(self, name: str, raw: str) -> Path:
        """``raw`` taken from the config file's folder (an absolute one stays as it is; a
        leading ``~`` or ``~user`` is that home folder).

        Before, a relative path was read from the working directory, and a leading ``~`` was
        a folder of that name beside the file: a node whose state is still there (and not at
        the new place) would start afresh with an empty state, silently. That is refused
        (:class:`_MovedStateError`) until the state is moved or the path is written anew."""
        path = Path(raw)
        if raw.startswith("~"):
            home, before = _expand_home(name, raw), self._folder / path
            if home.exists() or not before.exists():
                return home
            raise _MovedStateError(
                f"{name} {raw!r} in the config file is now the home folder's ({home}), which "
                f"holds nothing, while {before} (where bdx read it before) exists: move it "
                f"there, or write './{raw}' to keep the folder named '~'"
            )
        moved = self._folder / path
        if path.is_absolute() or moved.exists() or not path.exists():
            return moved
        raise _MovedStateError(
            f"{name} {raw!r} in the config file is read from the file's folder "
            f"({moved.absolute()}), which holds nothing, while {path.absolute()} (where bdx "
            "read it before) exists: move it there, or give the path absolute",
        )


def _expand_home(name: str, raw: str) -> Path:
    """The path ``raw`` with a leading ``~`` or ``~user`` expanded, as a shell expands it on a
    command line (``./~/x`` is a folder named ``~``: only the text's first character counts).
    ``data_dir = "~/bdx"`` in a config file made a folder named ``~`` beside the file.
    Raises :class:`_HomeError` when that home folder is unknown (HOME unset, no such user)."""
    if not raw.startswith("~"):
        return Path(raw)
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        raise _HomeError(
            f"{name} {raw!r} starts with a home folder that is unknown here "
            "(HOME unset, or no such user): give the path absolute"
        ) from None


def _home_or_refuse(name: str, raw: str) -> Path:
    """:func:`_expand_home` inside validation: an unknown home is a validation error."""
    try:
        return _expand_home(name, raw)
    except _HomeError as exc:
        raise PydanticCustomError("unknown_home", "{detail}", {"detail": str(exc)}) from None


class _HomeError(ValueError):
    """A path setting starts with ``~`` or ``~user`` and that home folder is unknown."""


class _MovedStateError(ValueError):
    """A relative path in a config file names state that is still where bdx read it before
    relative paths were taken from the file's folder."""


def _sqlite_from(url: str, place: Callable[[str], Path]) -> str:
    """``url`` with a relative SQLite file put in its ``place`` (given the file's text as
    written); other URLs unchanged.

    The URL is edited as text, not parsed and rendered again: a rendered URL quotes characters
    of the file's name (``@``, ``#``) that :attr:`Settings.sqlite_path` reads as they were."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # refused with its reason when the node first connects
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    scheme, sep, rest = url.partition(":///")
    raw, query, params = rest.partition("?")
    if not sep or not raw:
        return url
    return f"{scheme}{sep}{place(raw)}{query}{params}"


#: Settings that name a file or folder (taken from a config file's folder when relative).
_PATH_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if field.annotation in (Path, Path | None)
)


def load_settings(
    config_file: Path | None = None, *, check: bool = True, **overrides: Any
) -> Settings:
    """Read settings from the environment and ``config_file`` (or ``$BDX_CONFIG``).

    ``config_file`` is TOML when its name ends in ``.toml`` (any case), else a dotenv file of
    ``BDX_*`` settings only. Raises :class:`ConfigError` with reason ``bad_config`` for invalid
    values or an unreadable, empty or foreign file, and with reason ``unsafe_config`` when
    ``check`` is set and the production checks fail.
    """
    raw_config = os.environ.get("BDX_CONFIG") if config_file is None else str(config_file)
    try:  # a leading ~ is the home folder here too, as for every path setting
        config_file = _expand_home("config file", raw_config) if raw_config else None
    except _HomeError as exc:
        raise ConfigError(str(exc), reason="config_not_found") from None
    if config_file is not None and not config_file.exists():
        raise ConfigError(f"config file {config_file} not found", reason="config_not_found")
    is_toml = config_file is not None and config_file.suffix.lower() == ".toml"
    if config_file is not None:
        _check_config_file(config_file, is_toml=is_toml)
    token = _toml_file.set(config_file if is_toml else None)
    env_file = None if is_toml else config_file
    env_token = _env_config_file.set(env_file)
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), reason="bad_config") from None
    except SettingsError as exc:  # a value pydantic-settings could not decode (JSON)
        raise ConfigError(_describe_source_error(exc, config_file), reason="bad_config") from None
    except _MovedStateError as exc:
        raise ConfigError(str(exc), reason="moved_state") from None
    except _HomeError as exc:
        raise ConfigError(f"invalid settings: {exc}", reason="bad_config") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read config file {config_file}: {exc}") from None
    finally:
        _toml_file.reset(token)
        _env_config_file.reset(env_token)
    if check:
        settings.check_safe()
    return settings


#: A dotenv key this module can name in an error: anything else may be a secret's text.
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _check_config_file(path: Path, *, is_toml: bool) -> None:
    """Refuse a config file that sets nothing or, as dotenv, holds anything but ``BDX_*``
    settings: a TOML file named otherwise (``node.conf``) or unprefixed keys were read as an
    empty dotenv file, and the node started with the defaults (development, country XX)."""
    try:  # a folder, FIFO or device is refused here, at once, before pydantic reads the file
        text = read_bounded(path, MAX_CONFIG_FILE_BYTES).decode("utf-8")
        if is_toml:
            keys = list(tomllib.loads(text))
        else:  # parsed here first: python-dotenv logs what it cannot parse, and goes on
            keys = [_dotenv_key(path, b) for b in parse_stream(io.StringIO(text)) if _set(b)]
    except FileTooLargeError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", reason="file_too_large"
        ) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read config file {path}: {why}") from None
    except UnicodeDecodeError:  # its message quotes a byte of the file, perhaps of a secret
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except ValueError as exc:  # malformed TOML: its message names a line and column
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if not keys:
        raise ConfigError(f"config file {path} sets no setting", reason="bad_config")


def _set(binding: Binding) -> bool:
    """Whether a dotenv line is more than a comment or blank."""
    return binding.error or binding.key is not None


def _dotenv_key(path: Path, binding: Binding) -> str:
    """The key of a dotenv line that sets a ``BDX_*`` setting, else ConfigError naming the
    line (whose text may be a secret's) or the key (never the value)."""
    where = (
        binding.original.line
        + len(binding.original.string)
        - len(binding.original.string.lstrip("\n"))
    )
    hint = "(a TOML file's name ends in .toml)"
    key = binding.key
    if key is None or binding.value is None or not _KEY_RE.fullmatch(key):
        raise ConfigError(
            f"config file {path}: line {where} is not BDX_NAME=VALUE {hint}", reason="bad_config"
        )
    if key.upper() not in _DOTENV_KEYS:
        raise ConfigError(
            f"config file {path}: {key} is not a BDX_* setting {hint}", reason="bad_config"
        )
    return key


def _describe_source_error(exc: SettingsError, config_file: Path | None) -> str:
    """Where a value that could not be decoded came from: a variable is not a file."""
    found = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    if found is None:
        return f"invalid settings: {exc}"
    name = f"BDX_{found[1].upper()}"
    why = "a list or table is written as JSON"
    if isinstance(exc.__cause__, ValueError):
        why += f" ({exc.__cause__})"
    if found[2] == "EnvSettingsSource":
        return f"environment variable {name} is invalid: {why}"
    return f"config file {config_file}: {name} is invalid: {why}"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "invalid settings: " + "; ".join(parts)


#: The keys a dotenv config file may hold (upper case; pydantic-settings ignores case).
_DOTENV_KEYS = frozenset(f"BDX_{name.upper()}" for name in Settings.model_fields)
