"""Keep the rules in force equal to the rules file: re-read it when it changes.

An operator who suspends a country edits its rule (the obvious move in an incident); the node
read the file once, at start-up, and went on answering that country with the old rules, which
it also named in every logged decision. :class:`RulesFile` is checked in each housekeeping
round (:func:`node.exchange.setup.housekeeping_round`, at most a minute apart):

* a file whose modification time, size and SHA-256 are those of the rules in force is left
  alone (the hash is read only when the time or size moved);
* a valid file for this node's country replaces the rules of the :class:`PolicyEngine` (one
  attribute, so a decision uses either the old rules or the new ones, never a mix), is logged
  at WARNING, and appends a ``policy_loaded`` event (versions before and after, the file's
  SHA-256) to the exchange log, so auditors see from when each version decided;
* an invalid, unreadable or other country's file is refused: the rules in force stay, and an
  ERROR line says why, once per content of the file. In production a file that group or
  other users can write is refused too, as at start-up (``Settings.unsafe_reasons``): else an
  edit the start-up check would have refused took effect within a minute.

A changed file that keeps its ``version`` is applied too, with a warning: decisions name the
version, so each change should carry its own (the event's hash tells the contents apart).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matcher.readfile import FileTooLargeError, read_bounded
from policy.decision import PolicyEngine
from policy.rules import PolicyFileError, parse_policy

logger = logging.getLogger(__name__)

#: Group or other users may write the file: refused in production, as the start-up check does.
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH

#: The rules file itself may be this large (a region of a few dozen peers needs a few KB); a
#: larger file is refused before it is read whole.
MAX_RULES_BYTES = 1 << 20


@dataclass(frozen=True)
class _Seen:
    """What identifies one content of the file: its stat and the hash of its bytes."""

    mtime_ns: int
    size: int
    sha256: str


class RulesFile:
    """The rules file behind a :class:`PolicyEngine`; :meth:`check` applies a change."""

    def __init__(
        self,
        path: Path,
        engine: PolicyEngine,
        record: Callable[[dict[str, Any]], None],
        country: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        production: bool = False,
    ) -> None:
        self.path = path
        self.engine = engine
        self.record = record  # appends one event to the exchange log
        self.country = country
        self.clock = clock
        self.production = production
        self._loaded = self._identify()  # the content the engine's rules came from
        self._refused: str | None = None  # the content (hash) or failure last refused: said once

    def _identify(self) -> _Seen | None:
        try:
            st = os.stat(self.path)
            digest = hashlib.sha256(self._read()).hexdigest()
        except (OSError, ValueError):
            return None
        return _Seen(st.st_mtime_ns, st.st_size, digest)

    def _read(self) -> bytes:
        try:
            return read_bounded(self.path, MAX_RULES_BYTES)  # a FIFO refused, not waited on
        except FileTooLargeError:
            raise ValueError(f"larger than {MAX_RULES_BYTES} bytes") from None

    def check(self) -> bool:
        """Apply the file if it changed and is valid; True when the rules were replaced."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            return self._refuse(f"cannot read ({exc.strerror or exc})")
        seen = self._loaded
        if seen is not None and (st.st_mtime_ns, st.st_size) == (seen.mtime_ns, seen.size):
            return False
        if self.production and st.st_mode & OTHERS_WRITE:
            return self._refuse("writable by other users (chmod go-w)", f"mode:{st.st_mode:o}")
        try:
            data = self._read()
        except (OSError, ValueError) as exc:
            return self._refuse(f"cannot read ({getattr(exc, 'strerror', None) or exc})")
        digest = hashlib.sha256(data).hexdigest()
        now = _Seen(st.st_mtime_ns, st.st_size, digest)
        if seen is not None and digest == seen.sha256:  # touched, not changed
            self._loaded = now
            return False
        if digest == self._refused:
            return False
        try:
            rules = parse_policy(data.decode("utf-8"), source=str(self.path))
        except UnicodeDecodeError:
            return self._refuse("not UTF-8 text", digest)
        except PolicyFileError as exc:
            return self._refuse(" ".join(exc.message.split()), digest)
        if rules.country != self.country:
            why = f"holds {rules.country}'s rules, this node is {self.country}"
            return self._refuse(why, digest)
        before = self.engine.policy.version
        self.record(
            {
                "type": "policy_loaded",
                "node": self.country,
                "at": self.clock().isoformat(),
                "policy_version_before": before,
                "policy_version": rules.version,
                "sha256": digest,
            }
        )
        self.engine.policy = rules
        self._loaded, self._refused = now, None
        logger.warning("policy_file reloaded: version %s -> %s", before, rules.version)
        if rules.version == before:
            logger.warning(
                "policy_file changed but kept its version %r: logged decisions cannot tell "
                "the two apart (the policy_loaded event has the file's hash)",
                before,
            )
        return True

    def _refuse(self, why: str, digest: str | None = None) -> bool:
        """Keep the rules in force; say why once per refused content (or read failure)."""
        key = digest or why
        if key != self._refused:
            logger.error(
                "policy_file not reloaded, the rules of version %s stay in force: %s",
                self.engine.policy.version,
                why,
            )
            self._refused = key
        return False
