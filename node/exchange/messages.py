"""Wire messages of the peer exchange, protocol version 1.

Both messages travel as the payload of a JWS (RFC 7515) signed by the sender's signing
certificate (see :mod:`certs.jws`); the signed bytes are the canonical JSON of
:meth:`QueryPayload.wire` / :meth:`ReplyPayload.wire` (sorted keys, no whitespace, UTF-8).

A **query** carries the probe's templates and nothing that identifies the person: a query id
(UUID), requesting and responding country, purpose, modality, the templates with their
format/version, an optional case reference (the requester's own file number), creation time and
a random nonce.

A **reply** carries the query id, the outcome (``hit``, ``no_hit``, ``refused`` with a reason
code, ``error``), and on a hit an opaque reference (meaningless to anyone but the responder and
unlinkable across queries) plus a match strength band. Never personal data or a gallery
template.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROTOCOL_VERSION: Literal[1] = 1
#: Largest template accepted in a query (bytes, decoded). An ISO/IEC 19794-2 record with 255
#: minutiae is under 2 KiB; a face embedding is 512 bytes. 64 KiB leaves room for extended data.
MAX_TEMPLATE_BYTES = 64 * 1024
#: Smallest template on the wire (4 base64url characters); no real format is this short.
MIN_TEMPLATE_BYTES = 3
#: A subject has at most ten fingers and one face.
MAX_TEMPLATES = 11
#: Largest signed query body (bytes) the peer endpoint reads: every template at its largest in
#: base64 with 1 KiB of JSON around each and 4 KiB for the other fields, base64url-encoded
#: again as the JWS payload, plus 64 KiB for the protected header and its x5c chain.
MAX_QUERY_BYTES = (4 * (MAX_TEMPLATES * (4 * MAX_TEMPLATE_BYTES // 3 + 1024) + 4096)) // 3 + 65536
NONCE_BYTES = 16

Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
#: A purpose on the wire (the policy's purposes are snake_case words).
WirePurpose = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
#: An officer's case reference: printable, no spaces, so it logs and signs unambiguously.
CaseRef = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")]


class Outcome(StrEnum):
    HIT = "hit"
    NO_HIT = "no_hit"
    REFUSED = "refused"
    ERROR = "error"


class Strength(StrEnum):
    """Match strength band of a hit, from the estimated false match rate of its score."""

    STRONG = "strong"
    MODERATE = "moderate"
    WEAK = "weak"


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_decode(text: str) -> bytes:
    """Unpadded base64url in its one canonical form (no padding, no other character, no
    stray bits): anything else is a ValueError."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_nonce() -> str:
    return b64url(secrets.token_bytes(NONCE_BYTES))


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class TemplateItem(BaseModel):
    """One probe template: bytes (base64url) in a named format and version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str = Field(min_length=1, max_length=64)
    format_version: int = Field(ge=0, le=65535)
    finger_position: int | None = Field(default=None, ge=0, le=10)
    data: str = Field(
        min_length=-(-MIN_TEMPLATE_BYTES * 4 // 3), max_length=(MAX_TEMPLATE_BYTES * 4) // 3 + 4
    )

    @field_validator("data")
    @classmethod
    def _base64url(cls, value: str) -> str:
        try:
            raw = _b64url_decode(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("data must be base64url") from exc
        if not MIN_TEMPLATE_BYTES <= len(raw) <= MAX_TEMPLATE_BYTES:
            raise ValueError(f"template must be {MIN_TEMPLATE_BYTES}..{MAX_TEMPLATE_BYTES} bytes")
        return value

    def raw(self) -> bytes:
        return _b64url_decode(self.data)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = PROTOCOL_VERSION
    query_id: uuid.UUID
    requester: Country
    responder: Country
    created: datetime
    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

    @field_validator("created")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created must carry a time zone (UTC)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before the first UTC instant
            raise ValueError("created is out of range") from None

    #: Which field names the signing country: the requester of a query, the responder of a reply.
    signed_by: ClassVar[Literal["requester", "responder"]]

    @property
    def sender(self) -> str:
        return str(getattr(self, self.signed_by))

    def wire(self) -> dict[str, Any]:
        """The JSON object that is signed (canonicalised by the JWS layer). It carries
        ``sender``, which the JWS layer checks against the signing certificate's country."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["created"] = self.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        data["sender"] = self.sender
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        """Parse a verified payload; ``sender`` must name the side that signs this kind."""
        body = dict(data)
        sender = body.pop("sender", None)
        msg = cls.model_validate(body)
        if sender != msg.sender:
            raise ValueError(f"sender {sender!r} does not match the message ({msg.sender})")
        return msg


class QueryPayload(_Message):
    kind: Literal["query"] = "query"
    purpose: WirePurpose
    modality: Literal["fingerprint", "face"]
    templates: list[TemplateItem] = Field(min_length=1, max_length=MAX_TEMPLATES)
    case_ref: CaseRef | None = None

    signed_by = "requester"

    @model_validator(mode="after")
    def _not_to_self(self) -> QueryPayload:
        if self.requester == self.responder:
            raise ValueError("requester and responder must differ")
        # A malformed query is refused before the policy charges the quota; a face query with
        # two templates was refused only at the search, a unit of the day's quota spent.
        if self.modality == "face" and len(self.templates) != 1:
            raise ValueError("a face query carries exactly one template")
        return self


class ReplyPayload(_Message):
    kind: Literal["reply"] = "reply"
    outcome: Outcome
    reason: str | None = Field(default=None, max_length=64, pattern=r"^[a-z_]+$")
    reference: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    strength: Strength | None = None

    signed_by = "responder"

    @model_validator(mode="after")
    def _fields_match_outcome(self) -> ReplyPayload:
        is_hit = self.outcome is Outcome.HIT
        if is_hit != (self.reference is not None) or is_hit != (self.strength is not None):
            raise ValueError("reference and strength are given exactly when the outcome is hit")
        needs_reason = self.outcome in (Outcome.REFUSED, Outcome.ERROR)
        if needs_reason != (self.reason is not None):
            raise ValueError("a reason is given exactly when the outcome is refused or error")
        return self
