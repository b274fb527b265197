"""Witnessing: cosign peers' checkpoints only if consistent with what was cosigned before.

A witness remembers, per log origin, every checkpoint it cosigned. It cosigns a new
checkpoint only if the log signed it and a consistency proof links it to the latest one
cosigned; the same size with another root, a smaller size or a failing proof is refused.
A checkpoint consistent with that history is still refused (``bad_timestamp``) when it is dated
beyond the allowed clock skew ahead of the witness, or before the last one it cosigned.
Witnesses that compare what they cosigned (:meth:`Witness.check_peer_view`) catch a log that
shows different histories to different peers (a split view).

What a witness keeps of a checkpoint is its body and the log's own signature
(:func:`log_signed`): any other signature line of a note as presented is unverified text
of the presenter's choosing, so the same checkpoint presented again, whatever lines it
carries, is the same checkpoint (a fresh cosignature, no new row).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from certs.merkle import MerkleError, verify_consistency
from certs.translog import schema
from certs.translog.checkpoint import Checkpoint, Cosignature, SignedCheckpoint, cosign
from certs.translog.errors import (
    OriginMismatchError,
    ProofError,
    RollbackError,
    SignatureError,
    SplitViewError,
)
from certs.translog.keys import SigningKey, VerifyingKey
from certs.translog.note import Note
from certs.translog.params import CLOCK_SKEW_S


def log_signed(signed: SignedCheckpoint, log_key: VerifyingKey | None = None) -> SignedCheckpoint:
    """``signed`` reduced to its body and the log's own signature lines: those by ``log_key``
    (verified by the caller), or, without it, every line named after the log (what a witness
    stored was verified when it was cosigned). Cosignatures and any line a presenter added are
    dropped: they are unverified, and their number and size are the presenter's choice. The
    result still verifies under the log's key wherever a checkpoint is checked."""
    origin = signed.checkpoint.origin
    if log_key is None:
        kept = tuple(s for s in signed.note.signatures if s.name == origin)
    else:
        key_id = log_key.key_id()
        kept = tuple(
            s for s in signed.note.signatures if s.name == log_key.name and s.key_id == key_id
        )
    return SignedCheckpoint(signed.checkpoint, Note(signed.note.text, kept))


def check_views(
    a: SignedCheckpoint, b: SignedCheckpoint, log_key: VerifyingKey, proof: Sequence[bytes] = ()
) -> None:
    """Raise :class:`SplitViewError` unless two log-signed checkpoints can be one history.

    ``proof`` is the log's consistency proof from the smaller to the larger checkpoint
    (unused when the sizes are equal). Both checkpoints must verify under ``log_key``, so
    the pair is transferable evidence that the log signed two incompatible trees.
    """
    a.verify(log_key)
    b.verify(log_key)
    _one_history(a, b, proof)


def _one_history(a: SignedCheckpoint, b: SignedCheckpoint, proof: Sequence[bytes]) -> None:
    """:func:`check_views` without the signature checks (both verified before)."""
    small, large = sorted((a, b), key=lambda s: s.checkpoint.size)
    s, g = small.checkpoint, large.checkpoint
    evidence = (small.to_bytes(), large.to_bytes())
    if s.size == g.size:
        if s.root_hash != g.root_hash:
            raise SplitViewError(
                f"log {s.origin} signed two roots for size {s.size}", evidence=evidence
            )
        return
    try:
        verify_consistency(s.size, g.size, proof, s.root_hash, g.root_hash)
    except MerkleError as exc:
        if exc.reason != "root_mismatch":  # a malformed proof is no evidence of a fork
            raise ProofError(
                f"the consistency proof from size {s.size} to {g.size} is malformed ({exc.reason})"
            ) from exc
        raise SplitViewError(
            f"log {s.origin}: size {g.size} is not an extension of size {s.size} ({exc.reason})",
            evidence=evidence,
        ) from exc


def _check_time(new: Checkpoint, last: SignedCheckpoint | None, clock: float) -> None:
    """A checkpoint's time bounds when its entries were logged: refuse one dated beyond the
    allowed skew ahead of this witness's clock (it would vouch for a time not yet come), or
    before the last one cosigned for the log (it would backdate entries; the last one holds
    the latest time cosigned, since every cosigned checkpoint passed this check)."""
    if new.timestamp_ms / 1000 > clock + CLOCK_SKEW_S:
        raise SignatureError(
            f"checkpoint {new.size} is dated ahead of this witness's clock",
            reason="bad_timestamp",
        )
    if last is not None and new.timestamp_ms < last.checkpoint.timestamp_ms:
        raise SignatureError(
            f"checkpoint {new.size} is dated before checkpoint {last.checkpoint.size}, "
            "cosigned earlier",
            reason="bad_timestamp",
        )


class Witness:
    """A node's witness role for peer logs, persisted in ``translog_witnessed``."""

    def __init__(
        self, engine: Engine, key: SigningKey, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._key = key
        self._clock = clock

    @property
    def verifying_key(self) -> VerifyingKey:
        return self._key.verifying_key()

    def use_key(self, key: SigningKey) -> None:
        """Cosign with ``key`` from now on (this witness's renewed key)."""
        self._key = key

    def _lock_origin(self, conn: Connection, origin: str, now: datetime) -> bool:
        """Lock the witness head row of ``origin`` in the begun transaction, creating it if
        needed; return whether this witness cosigned that log before."""
        t = schema.witness_heads
        if conn.dialect.name == "sqlite":
            driver = conn.connection.driver_connection
            if driver is not None and not driver.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        existed = conn.execute(
            select(t.c.origin).where(t.c.origin == origin).with_for_update()
        ).first()
        if existed is not None:
            return True
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(t).values(origin=origin, tree_size=0, root_hash=b"", updated_at=now)
                )
        except IntegrityError:  # a concurrent first cosign created it: wait for its lock
            conn.execute(select(t.c.origin).where(t.c.origin == origin).with_for_update())
            return True
        return False

    def latest(self, origin: str, conn: Connection | None = None) -> SignedCheckpoint | None:
        """The largest checkpoint of ``origin`` this witness cosigned, if any (with the log's
        signature only, see :func:`log_signed`)."""
        t = schema.witnessed
        query = (
            select(t.c.note)
            .where(t.c.origin == origin)
            .order_by(t.c.tree_size.desc(), t.c.id.desc())
            .limit(1)
        )
        if conn is None:
            with self._engine.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        return None if row is None else log_signed(SignedCheckpoint.from_bytes(row.note))

    def roots_at(self, origin: str, size: int) -> set[bytes]:
        """The roots of ``origin``'s checkpoints of ``size`` this witness cosigned: none, or one
        (a witness cosigns one history)."""
        t = schema.witnessed
        query = select(t.c.root_hash).where(t.c.origin == origin, t.c.tree_size == size)
        with self._engine.connect() as conn:
            return set(conn.execute(query.distinct()).scalars())

    def history(self, origin: str) -> list[SignedCheckpoint]:
        """Every checkpoint of ``origin`` this witness cosigned, oldest first (each with the
        log's signature only, see :func:`log_signed`)."""
        t = schema.witnessed
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.c.note).where(t.c.origin == origin).order_by(t.c.id))
            return [log_signed(SignedCheckpoint.from_bytes(r.note)) for r in rows]

    def cosign(
        self,
        checkpoint: bytes,
        log_key: VerifyingKey,
        proof: Sequence[bytes] = (),
        old_size: int | None = None,
    ) -> Cosignature:
        """Verify a peer's signed checkpoint and ``proof`` (consistency from the latest one
        cosigned for that log; empty for the first or an unchanged size), then cosign it.
        ``old_size``, when given, is the size the proof starts from: another than this
        witness's latest is a stale proof, not a fork (the witness cosigned meanwhile).

        Raises :class:`SignatureError`, :class:`ProofError`, :class:`RollbackError` or
        :class:`SplitViewError`.
        """
        signed = SignedCheckpoint.from_bytes(checkpoint)
        signed.verify(log_key)
        new = signed.checkpoint
        clock = self._clock()
        now = datetime.fromtimestamp(clock, UTC)
        with self._engine.connect() as conn, conn.begin():
            seen = self._lock_origin(conn, new.origin, now)
            last = self.latest(new.origin, conn) if seen else None
            if seen and last is None:  # pragma: no cover - the head row and history go together
                raise RollbackError("witness state lost its history", reason="witness_state")
            held = last.checkpoint.size if last is not None else 0
            if old_size is not None and old_size != held and new.size >= held:
                raise ProofError(
                    f"the proof starts from size {old_size}; this witness is at size {held}",
                    reason="stale_proof",
                )
            if last is not None:
                if new.size < last.checkpoint.size:
                    raise RollbackError(
                        f"log {new.origin} presented size {new.size} after "
                        f"size {last.checkpoint.size} was cosigned"
                    )
                # ``last`` was verified when it was cosigned; the log's key may have been
                # renewed since (a new signing certificate), so only the new one is verified.
                _one_history(last, signed, proof)
            cosignature = cosign(new, self._key, int(self._clock()))
            if last is not None and last.note.text == signed.note.text:
                # The same checkpoint again: a fresh cosignature, no new row. Its other signature
                # lines (cosignatures, or anything the log added) are not part of it.
                return cosignature
            # Only a checkpoint consistent with the history is checked for its time, so that a
            # fork is refused as one (and kept as evidence) however it is dated.
            _check_time(new, last, clock)
            conn.execute(
                update(schema.witness_heads)
                .where(schema.witness_heads.c.origin == new.origin)
                .values(tree_size=new.size, root_hash=new.root_hash, updated_at=now)
            )
            conn.execute(
                insert(schema.witnessed).values(
                    origin=new.origin,
                    tree_size=new.size,
                    root_hash=new.root_hash,
                    note=log_signed(signed, log_key).to_bytes(),
                    cosigned_at=now,
                )
            )
        return cosignature

    def check_peer_view(
        self,
        other: bytes,
        log_key: VerifyingKey,
        proof: Sequence[bytes] = (),
        mine: SignedCheckpoint | None = None,
    ) -> None:
        """Compare a checkpoint another witness cosigned for a log with this witness's view.

        ``proof`` is a consistency proof between the two (from the log or the other witness).
        ``mine`` is the checkpoint of this witness's to compare with (one it cosigned; the
        proof was asked for its size), by default its latest for that log.
        Raises :class:`SplitViewError` when both cannot be the same history,
        :class:`ProofError` when the proof is malformed for the two sizes.
        """
        theirs = SignedCheckpoint.from_bytes(other)
        if mine is not None and mine.checkpoint.origin != theirs.checkpoint.origin:
            raise OriginMismatchError(
                f"{theirs.checkpoint.origin} is not {mine.checkpoint.origin}", reason="wrong_origin"
            )
        mine = mine or self.latest(theirs.checkpoint.origin)
        if mine is None:
            raise OriginMismatchError(
                f"this witness has cosigned nothing for {theirs.checkpoint.origin}",
                reason="unknown_log",
            )
        theirs.verify(log_key)  # ``mine`` was verified when cosigned (the key may be newer)
        _one_history(mine, theirs, proof)
