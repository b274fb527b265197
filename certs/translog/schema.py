"""SQLAlchemy Core tables of the exchange log (created by the node's Alembic migration).

* ``translog_head``: one row per log (``origin``): tree size and compact range (the roots of
  the perfect subtrees making up the tree, concatenated), so an append needs no other read.
  Appends lock this row (``SELECT ... FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``), and so
  does pruning, which moves ``pruned_size`` (entries below it are pruned) only forwards.
* ``translog_entries``: the leaves (index, leaf hash, entry bytes, time appended). A pruned
  entry keeps its row with empty bytes (an appended entry is never empty): its leaf hash still
  makes up the tree, so checkpoints and proofs verify as before.
* ``translog_nodes``: hashes of perfect subtrees of level >= 1, written when they complete.
* ``translog_checkpoints`` / ``translog_cosignatures``: signed checkpoints the log issued
  and the witness cosignatures it collected for them.
* ``translog_witness_heads``: per peer log (origin), the latest (size, root) this node
  cosigned as a witness; cosigning locks the row, so one peer's checkpoints are judged one
  at a time.
* ``translog_witnessed``: every checkpoint of a peer log this node cosigned (its history of
  that log, evidence in a split view).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

ORIGIN_LENGTH = 255

head = Table(
    "translog_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("origin", String(ORIGIN_LENGTH), nullable=False, unique=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("compact_range", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Entries below this index are pruned: their bytes deleted, their leaf hashes kept.
    Column("pruned_size", BigInteger, nullable=False, server_default="0"),
)

entries = Table(
    "translog_entries",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_translog_entries_created_at", "created_at"),
)

nodes = Table(
    "translog_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("node_index", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "translog_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Index("ix_translog_checkpoints_tree_size", "tree_size"),
)

cosignatures = Table(
    "translog_cosignatures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "checkpoint_id",
        Integer,
        ForeignKey("translog_checkpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("witness", String(ORIGIN_LENGTH), nullable=False),
    Column("key_id", LargeBinary(4), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    UniqueConstraint("checkpoint_id", "witness", "key_id", name="uq_translog_cosignature"),
)

witness_heads = Table(
    "translog_witness_heads",
    metadata,
    Column("origin", String(ORIGIN_LENGTH), primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

witnessed = Table(
    "translog_witnessed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(ORIGIN_LENGTH), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("cosigned_at", DateTime(timezone=True), nullable=False),
    Index("ix_translog_witnessed_origin_size", "origin", "tree_size"),
)
