"""Sharing restrictions attached to a template record (interpreted by the exchange policy).

They are stored as JSON on the record; this model validates them on the way in and out.
An empty model means "no restriction beyond the country policy".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from node.settings import CountryCode
from policy.rules import Purpose


class SharingRestrictions(BaseModel):
    """What a peer may learn about a record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_exchange_consent: bool = Field(False, description="never report this record to any peer")
    asylum_nationality: CountryCode | None = Field(
        None, description="the subject sought asylum from this country: never answer it"
    )
    peers: list[CountryCode] | None = Field(
        None, description="only these peer countries may be answered (null: any)"
    )
    purposes: list[Purpose] | None = Field(
        None,
        description="only queries with these purposes (the agreement's) may be answered "
        "(null: any)",
    )
