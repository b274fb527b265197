"""A node's exchange rules: the TOML file, its schema and its validation.

One file per node. It names this node's country and a version (part of every logged decision),
then one ``[peers.XX]`` table per peer country that may query this node (inbound rules) and one
``[outbound.XX]`` table per peer this country's officers may query. Example::

    version = "2026-11-01.1"
    country = "TH"

    [defaults]
    max_candidates = 10
    fmr = { fingerprint = 1e-4, face = 1e-3 }

    [peers.ID]
    purposes = ["border_control", "law_enforcement"]
    modalities = ["fingerprint", "face"]
    daily_quota = { fingerprint = 1000, face = 200 }
    max_candidates = 5
    hours = ["06:00-22:00"]
    timezone = "Asia/Bangkok"

    [outbound.ID]
    purposes = ["border_control"]
    modalities = ["fingerprint"]

``max_candidates`` is how many candidates a peer's search keeps above its threshold: the
record restrictions then drop those that may not be shared with the peer, and the reply names
the best of the rest (one reference: a hit/no-hit reply names one record, never a list), so a
restricted best candidate does not hide a shareable second one. ``fmr`` is a modality's
false-match-rate target for one comparison; the node's search makes it
stricter where its ``search_fpir`` setting at the gallery's size asks for it (README, "How a
search decides"). Anything not allowed is refused: an unknown peer, purpose or modality, a
modality without a quota, a time outside the hours of service. Loading validates everything and
reports every problem with its location (:class:`PolicyFileError`).
"""

from __future__ import annotations

import re
import tomllib
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from certs.pki.names import ISO_3166_ALPHA2, USER_ASSIGNED
from matcher.readfile import FileTooLargeError, read_bounded
from policy.errors import PolicyError

COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
HOURS_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class Purpose(StrEnum):
    """Why a search is made; the vocabulary of the regional agreement."""

    BORDER_CONTROL = "border_control"
    IMMIGRATION = "immigration"
    ASYLUM = "asylum"
    LAW_ENFORCEMENT = "law_enforcement"
    COUNTER_TERRORISM = "counter_terrorism"
    TRAFFICKING_VICTIM_IDENTIFICATION = "trafficking_victim_identification"


class Modality(StrEnum):
    FINGERPRINT = "fingerprint"
    FACE = "face"


class PolicyFileError(PolicyError):
    """The rules file is unreadable or invalid; ``problems`` lists each with its location."""

    exit_code = 3
    default_reason = "invalid_policy"

    def __init__(
        self, message: str, problems: list[str] | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.problems = problems or []


class PolicyFileNotFound(PolicyFileError):
    """The rules file does not exist (exit 4, not found)."""

    exit_code = 4
    default_reason = "policy_not_found"


MINUTES_PER_DAY = 24 * 60
#: Largest rules file read: a region's rules are a few KB. The bound the running node's reload
#: applies too (``node.exchange.rules_reload.MAX_RULES_BYTES``); a bigger file (``/dev/zero``)
#: is read no further (``file_too_large``).
MAX_RULES_FILE_BYTES = 1 << 20
#: Zone files that follow the machine, not a place: a rule must mean the same on every host.
HOST_DEPENDENT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def known_country(code: str) -> str:
    """``code`` if ISO 3166-1 assigns it (or leaves it to private use, as test regions do);
    a rule under a code no node can have would silently never apply."""
    if code not in ISO_3166_ALPHA2 and code not in USER_ASSIGNED:
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


CountryCode = Annotated[str, Field(pattern=COUNTRY_RE.pattern), AfterValidator(known_country)]
FmrValue = Annotated[float, Field(gt=0.0, lt=1.0)]
#: Largest daily quota a rule may set: the ledger counts in a 32-bit ``INTEGER`` column, and a
#: larger limit failed every query of that peer on PostgreSQL ("integer out of range") while
#: SQLite took it; two billion searches a day is no limit at all, so nothing is lost.
MAX_DAILY_QUOTA = 2**31 - 1


class ServiceWindow(BaseModel):
    """A daily window ``start <= t < end`` in the peer rule's time zone; may wrap midnight.

    Written ``"HH:MM-HH:MM"`` (or as a table ``{start = "HH:MM", end = "HH:MM"}``); an end of
    ``24:00`` is the end of the day (held as ``time.max``, so 23:59:30 is inside)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> ServiceWindow:
        if self.start == self.end:
            raise ValueError(f"hours {self}: empty window (start equals end)")
        return self

    @classmethod
    def parse(cls, text: str) -> ServiceWindow:
        m = HOURS_RE.match(text)
        if not m:
            raise ValueError(f"hours {text!r} must look like 'HH:MM-HH:MM'")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        try:
            start = time(h1, m1)
            end = time.max if (h2, m2) == (24, 0) else time(h2, m2)
        except ValueError as exc:
            raise ValueError(f"hours {text!r}: {exc}") from exc
        return cls(start=start, end=end)

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def minutes(self) -> frozenset[int]:
        """The minutes of the day (0..1439) the window covers."""
        return frozenset(i for i in range(MINUTES_PER_DAY) if self.contains(time(i // 60, i % 60)))

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


#: FMR targets when a rules file names none for a modality.
DEFAULT_FMR = {Modality.FINGERPRINT: 1e-4, Modality.FACE: 1e-3}


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_candidates: int = Field(default=10, ge=1, le=100, strict=True)
    fmr: dict[Modality, FmrValue] = Field(default_factory=lambda: dict(DEFAULT_FMR))

    @field_validator("fmr", mode="after")
    @classmethod
    def _complete(cls, value: dict[Modality, float]) -> dict[Modality, float]:
        """A file naming one modality's FMR keeps the built-in default of the others."""
        return {**DEFAULT_FMR, **value}


class PeerRule(BaseModel):
    """What one peer country may ask this node."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    purposes: frozenset[Purpose]
    modalities: frozenset[Modality]
    daily_quota: dict[Modality, Annotated[int, Field(ge=0, le=MAX_DAILY_QUOTA, strict=True)]]
    max_candidates: int | None = Field(default=None, ge=1, le=100, strict=True)
    fmr: dict[Modality, FmrValue] = Field(default_factory=dict)
    hours: tuple[ServiceWindow, ...] = ()
    timezone: str = "UTC"

    @field_validator("hours", mode="before")
    @classmethod
    def _parse_hours(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(ServiceWindow.parse(v) if isinstance(v, str) else v for v in value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value in HOST_DEPENDENT_ZONES:
            raise ValueError(f"time zone {value!r} depends on the host; name an IANA zone")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a folder
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _quota_for_each_modality(self) -> PeerRule:
        missing = sorted(m.value for m in self.modalities if m not in self.daily_quota)
        if missing:
            raise ValueError(f"daily_quota missing for modalities {missing}")
        extra = sorted(m.value for m in self.daily_quota if m not in self.modalities)
        if extra:
            raise ValueError(f"daily_quota given for modalities not allowed: {extra}")
        return self


class OutboundRule(BaseModel):
    """Which purposes and modalities this country's officers may query a peer for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    purposes: frozenset[Purpose]
    modalities: frozenset[Modality] = frozenset(Modality)


class Policy(BaseModel):
    """A validated rules file. Immutable; ``version`` is logged with every decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1, max_length=64)
    country: CountryCode
    defaults: Defaults = Field(default_factory=Defaults)
    peers: dict[CountryCode, PeerRule] = Field(default_factory=dict)
    outbound: dict[CountryCode, OutboundRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_self(self) -> Policy:
        if self.country in self.peers or self.country in self.outbound:
            raise ValueError(f"the node's own country {self.country} cannot be a peer")
        return self

    def max_candidates(self, peer: str) -> int:
        rule = self.peers.get(peer)
        if rule is not None and rule.max_candidates is not None:
            return rule.max_candidates
        return self.defaults.max_candidates

    def fmr(self, peer: str | None, modality: Modality) -> float:
        rule = self.peers.get(peer) if peer else None
        if rule is not None and modality in rule.fmr:
            return rule.fmr[modality]
        return self.defaults.fmr.get(modality, DEFAULT_FMR[modality])


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Parse and validate a rules file's text. Raises :class:`PolicyFileError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: not valid TOML ({exc})", [str(exc)]) from exc
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = _problems(exc)
        head = problems[0] if problems else "invalid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PolicyFileError(f"{source}: {head}{more}", problems) from exc


def load_policy(path: str | Path) -> Policy:
    """Read and validate a rules file. Raises :class:`PolicyFileError`."""
    p = Path(path)
    try:  # a FIFO or device is refused at once (one was waited on, or read, without end)
        text = read_bounded(p, MAX_RULES_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise PolicyFileNotFound(f"{p}: cannot read (no such file)") from None
    except FileTooLargeError as exc:
        raise PolicyFileError(
            f"{p}: cannot read ({exc.strerror})", reason="file_too_large"
        ) from None
    except OSError as exc:
        raise PolicyFileError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:  # its message would quote a byte of the file
        raise PolicyFileError(f"{p}: cannot read (not UTF-8 text)") from None
    return parse_policy(text, source=str(p))


__all__ = [
    "Defaults",
    "Modality",
    "OutboundRule",
    "PeerRule",
    "Policy",
    "PolicyFileError",
    "Purpose",
    "ServiceWindow",
    "load_policy",
    "parse_policy",
]
