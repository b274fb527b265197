"""Building a node's exchange parts from its settings (called by ``create_app``).

:func:`build_exchange` loads the node's PKI credentials (``pki_dir``, the layout of
``bdx pki bootstrap``), its rules file and the hit-reference secret, opens the exchange log
(:func:`open_transparency_log`) and returns the :class:`Responder` (peers' queries), the
:class:`Requester` (officers' queries), the peers and the log. All state lives in the node
database: nonces, hit references, quota usage and the log's tree. :func:`check_exchange` reads
the rules and the secret beforehand, so ``bdx serve`` refuses them before it listens.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from certs.errors import CertsError
from certs.pki.credentials import NodeCredentials, NodePaths
from certs.pki.params import MAX_PASSPHRASE_FILE_BYTES
from certs.pki.standing import assess
from certs.translog import SigningKey, TransparencyLog, VerifyingKey
from matcher.readfile import read_bounded
from matcher.search.fingerprint import fingerprint_schema
from node.audit import retention
from node.audit.actions import mirror_actions
from node.errors import ConfigError
from node.exchange import params
from node.exchange.eventlog import TranslogExchangeLog
from node.exchange.params import VIEW_COMPARE_INTERVAL_S
from node.exchange.pki_watch import PkiWatch, log_line
from node.exchange.references import HitReferences
from node.exchange.renewal import OwnCertificates
from node.exchange.replay import ReplayGuard
from node.exchange.requester import Peer, Requester
from node.exchange.responder import Responder
from node.exchange.rules_reload import RulesFile
from node.exchange.search import GallerySearch, RecordRestrictions
from node.exchange.witnessing import WitnessService, compare_views, log_origin, witness_round
from node.repositories.sent_queries import SentQueryIndex
from node.service_errors import StoreUnavailableError
from node.services.galleries import GallerySet, gallery_name
from node.services.search_pool import SearchPool
from node.settings import Settings
from policy.decision import PolicyEngine
from policy.quota import QuotaLedger
from policy.rules import Policy, PolicyFileError, load_policy

logger = logging.getLogger(__name__)

#: Longest sleep between checkpoint checks, so a short ``checkpoint_interval_s`` is honoured
#: and a long one still notices growth within a minute.
CHECKPOINT_POLL_S = 60.0
#: Longest wait for the requester's pooled connections to close at shutdown.
CLOSE_TIMEOUT_S = 5.0
#: Bytes of a new hit-reference secret (HMAC-SHA-256 key: 32 is its block-safe minimum).
HIT_SECRET_BYTES = 32
#: Read bound of ``hit_secret_file``: the node writes 32 random bytes; an operator's own
#: secret of any sensible length fits, a device or a huge file named by mistake does not.
MAX_HIT_SECRET_FILE_BYTES = 64 * 1024
#: Read bound of the log-key history (one vkey line, ~100 bytes, per key the log ever had).
MAX_LOG_KEYS_FILE_BYTES = 1 << 20
#: Seconds between expiries of hit references: the follow-up period counts in days, so an hour
#: late is nothing, and a query of the ``created_at`` index every housekeeping round is waste.
HIT_EXPIRY_EVERY_S = 3600.0
#: Seconds between retention runs over the exchange log and audit trail (``exchange_log_days``
#: counts in days too; each run prunes at most ``retention.ROUND_BATCHES`` batches).
RETENTION_EVERY_S = 3600.0


@dataclass
class Exchange:
    """A node's exchange parts, built once at start-up."""

    credentials: NodeCredentials
    policy: PolicyEngine
    responder: Responder
    requester: Requester
    log: TransparencyLog
    peers: dict[str, Peer]
    witness: WitnessService
    peer_timeout_s: float
    search_pool: SearchPool | None = None
    rules_file: RulesFile | None = None  # re-read by housekeeping when it changes
    views_compared_at: float = float("-inf")  # time.monotonic() of the last compare_views
    hits_expired_at: float = float("-inf")  # time.monotonic() of the last hit expiry
    retention_days: int | None = None  # exchange_log_days (None: housekeeping prunes nothing)
    pruned_at: float = float("-inf")  # time.monotonic() of the last retention run
    # references deleted whose hit_references_expired event is not logged yet: (count, cut-off)
    unlogged_expiry: tuple[int, datetime] | None = None
    own: OwnCertificates | None = None  # renewed own certificates picked up by housekeeping
    pki_watch: PkiWatch = field(init=False)  # how this node's own PKI documents stand

    def __post_init__(self) -> None:
        self.pki_watch = PkiWatch(self.credentials)


#: In ``data_dir``: the trust-list sequence and CRL number this node accepted last.
HELD_FILE = "pki-held.json"


def _passphrase(settings: Settings) -> bytes | None:
    if settings.pki_passphrase_file is None:
        return None
    try:
        return read_bounded(settings.pki_passphrase_file, MAX_PASSPHRASE_FILE_BYTES).strip()
    except OSError as exc:
        raise ConfigError(f"cannot read pki_passphrase_file: {exc}") from None


def load_credentials(
    settings: Settings, *, record: bool = True, check: bool = True
) -> NodeCredentials:
    """The node's credentials from ``pki_dir``; raises ConfigError when not configured.

    ``record=False`` (commands other than ``bdx serve``, which an operator may run as another
    OS user) enforces ``data_dir/pki-held.json`` without writing it: the node's own files stay
    the node's, and the node records a newer trust list or CRL when it reloads them.
    ``check=False`` loads stale lists and refused own certificates all the same (see
    :class:`NodeCredentials`): the node serves its API and local commands work while the
    peer exchange refuses (:mod:`node.exchange.pki_watch`)."""
    if settings.pki_dir is None:
        raise ConfigError("pki_dir is not set", reason="no_pki")
    paths = NodePaths.from_region(settings.pki_dir, settings.country)
    held = settings.data_dir / HELD_FILE
    return NodeCredentials(
        paths, passphrase=_passphrase(settings), held_file=held, record=record, check=check
    )


def open_transparency_log(
    settings: Settings,
    engine: Engine,
    *,
    record: bool = True,
    warn: Callable[[str], None] | None = None,
) -> TransparencyLog:
    """The node's exchange log on ``engine``, checkpoints signed with the node's signing key.

    The public key is also recorded in ``data_dir/log-keys.txt`` (C2SP vkeys, one per line),
    and the keys recorded before are the log's earlier keys: after the node renews its
    signing certificate, its own store audit still verifies the checkpoints the old key
    signed. (An auditor verifies with keys it takes from the PKI: ``bdx audit store
    --log-key``.) ``record=False`` reads both files and writes neither (see
    :func:`load_credentials`); the node records its key when it opens the log.

    The log needs the signing key only: a stale trust list or CRL, or an expired or revoked
    own certificate, must not lock local administration and audit out (``users disable`` is a
    security response). Each such problem is passed to ``warn`` (one sentence) instead."""
    creds = load_credentials(settings, record=record, check=False)
    if warn is not None:
        for notice in assess(creds):
            if notice.refusing:
                warn(log_line(notice))
    return _open_log(settings, engine, creds, record=record)


def _open_log(
    settings: Settings, engine: Engine, creds: NodeCredentials, *, record: bool
) -> TransparencyLog:
    key = SigningKey(log_origin(creds.country), creds.signing_key)
    path = settings.data_dir / LOG_KEYS_FILE
    earlier = _log_key_history(path, key.verifying_key(), record=record)
    return TransparencyLog.open(engine, key, earlier_keys=earlier)


#: In ``data_dir``: the public keys the node's exchange log has been signed with.
LOG_KEYS_FILE = "log-keys.txt"


def _log_key_history(
    path: Path, current: VerifyingKey, *, record: bool = True
) -> list[VerifyingKey]:
    """The keys recorded in ``path`` other than ``current``; ``current`` is added when
    ``record``."""
    try:
        text = read_bounded(path, MAX_LOG_KEYS_FILE_BYTES) if path.exists() else b""
        lines = text.decode("ascii").split()
        keys = [VerifyingKey.from_vkey(line)[0] for line in lines]
    except OSError as exc:  # e.g. created by a command run as another user
        raise ConfigError(f"cannot read {path}: {exc}", reason="bad_log_keys") from None
    except (UnicodeDecodeError, CertsError) as exc:
        raise ConfigError(
            f"{path}: not a list of log keys ({exc})", reason="bad_log_keys"
        ) from None
    mine = current.to_vkey()
    if record and mine not in lines:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (mine + "\n").encode("ascii"))
            finally:
                os.close(fd)
        except OSError as exc:
            raise ConfigError(
                f"cannot record the log key in {path}: {exc}", reason="bad_log_keys"
            ) from None
    return [k for k, line in zip(keys, lines, strict=True) if line != mine]


def hit_secret(settings: Settings, *, create: bool = True) -> bytes:
    """The hit-reference secret, created (0600, random) on first start. A reader that must
    not create one (``create`` false: an auditor's command, whose new random secret would
    match nothing) gets a :class:`ConfigError` (``no_hit_secret``) where there is none."""
    path = settings.hit_secret_file or settings.data_dir / "hit-secret.key"
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no hit secret at {path}: give the settings of the node whose secret it is "
                "(hit_secret_file or data_dir)",
                reason="no_hit_secret",
            )
        _create_hit_secret(path)
    try:
        secret = read_bounded(path, MAX_HIT_SECRET_FILE_BYTES)
    except OSError as exc:  # a folder, unreadable, not creatable
        raise ConfigError(
            f"cannot read hit_secret_file {path}: {exc.strerror}", reason="bad_config"
        ) from None
    if len(secret) < HIT_SECRET_BYTES:
        raise ConfigError(
            f"hit_secret_file {path} holds {len(secret)} bytes; {HIT_SECRET_BYTES}+ needed",
            reason="bad_config",
        )
    return secret


def _create_hit_secret(path: Path) -> None:
    """Write a new secret to ``path``: in full or not at all. It is written to a temporary file
    beside it (0600) and synced, then linked into place, which never replaces a secret another
    process created meanwhile; the temporary file is removed whatever happens. A write that
    fails (a full disk) left an empty secret that refused every later start. Raises
    :class:`StoreUnavailableError` (``storage_error``, exit 7) when the file cannot be written."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(HIT_SECRET_BYTES))
                f.flush()
                os.fsync(f.fileno())
            with suppress(FileExistsError):  # another process's, created meanwhile: it stays
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot write hit secret {path}: {exc.strerror}", reason="storage_error"
        ) from None


def load_rules(settings: Settings, creds: NodeCredentials) -> Policy:
    """The node's rules file, for the country of ``creds`` and ``settings``; raises
    :class:`ConfigError` (one line) when either differs or the file is missing or invalid."""
    if settings.policy_file is None:
        raise ConfigError("policy_file is not set", reason="no_policy")
    if creds.country != settings.country:
        raise ConfigError(
            f"the certificates in pki_dir are {creds.country}'s, this node is {settings.country}",
            reason="bad_config",
        )
    try:
        rules = load_policy(settings.policy_file)
    except PolicyFileError as exc:  # its message names the file and the first problem
        raise ConfigError(
            f"policy_file {' '.join(exc.message.split())}", reason=exc.reason
        ) from None
    if rules.country != settings.country:
        raise ConfigError(
            f"policy_file {settings.policy_file} holds {rules.country}'s rules, "
            f"this node is {settings.country}",
            reason="policy_country_mismatch",
        )
    return rules


def check_exchange(settings: Settings, creds: NodeCredentials) -> None:
    """Read what :func:`build_exchange` reads besides the credentials: the rules and the hit
    secret. ``bdx serve`` calls it before it listens, so their errors are one line (exit 2),
    not uvicorn's lifespan traceback while the peer listener already took connections."""
    load_rules(settings, creds)
    hit_secret(settings)


def build_exchange(settings: Settings, engine: Engine, galleries: GallerySet) -> Exchange:
    """Every exchange part of the node (see the module docstring)."""
    creds = load_credentials(settings, check=False)  # the exchange refuses: PkiWatch says so
    rules = load_rules(settings, creds)
    log = _open_log(settings, engine, creds, record=True)
    pool = None
    if settings.search_processes:
        directory = galleries.root / gallery_name(fingerprint_schema())
        pool = SearchPool(directory, settings.search_processes)
    try:
        return _assemble(settings, engine, galleries, creds, rules, log, pool)
    except BaseException:
        if pool is not None:
            pool.close()
        raise


def _assemble(
    settings: Settings,
    engine: Engine,
    galleries: GallerySet,
    creds: NodeCredentials,
    rules: Policy,
    log: TransparencyLog,
    pool: SearchPool | None,
) -> Exchange:
    elog = TranslogExchangeLog(log)
    policy = PolicyEngine(rules, QuotaLedger(engine))
    chain = [creds.signing_cert]
    responder = Responder(
        country=creds.country,
        trust=creds.anchors,
        signing_key=creds.signing_key,
        signing_chain=chain,
        policy=policy,
        replay=ReplayGuard(engine, timedelta(seconds=settings.replay_window_s)),
        hits=HitReferences(
            engine, hit_secret(settings), timedelta(days=settings.hit_reference_days)
        ),
        search=GallerySearch(galleries, pool, fpir=settings.search_fpir),
        restrictions=RecordRestrictions(engine),
        exchange_log=elog,
    )
    requester = Requester(
        country=creds.country,
        trust=creds.anchors,
        signing_key=creds.signing_key,
        signing_chain=chain,
        tls=creds.client_context(),
        exchange_log=elog,
        timeout=settings.peer_timeout_s,
        pooled=True,
        clock_window=timedelta(seconds=settings.replay_window_s),
    )
    peers = {cc: Peer(cc, url) for cc, url in settings.peers.items()}
    witness = WitnessService.create(engine, creds, elog)
    assert settings.policy_file is not None  # load_rules refused a node without one
    rules_file = RulesFile(
        settings.policy_file,
        policy,
        elog.record,
        creds.country,
        production=settings.environment == "production",
    )
    record_key = partial(_log_key_history, settings.data_dir / LOG_KEYS_FILE)
    own = OwnCertificates(creds, responder, requester, log, witness, record_key)
    return Exchange(
        creds,
        policy,
        responder,
        requester,
        log,
        peers,
        witness,
        settings.peer_timeout_s,
        pool,
        rules_file,
        own=own,
        retention_days=settings.exchange_log_days,
    )


async def _housekeeping(exchange: Exchange, interval_s: float) -> None:
    """Re-read a changed rules file (:mod:`node.exchange.rules_reload`), the published trust
    list and CRL, the node's renewed certificates (:mod:`node.exchange.renewal`), forget the
    replay nonces that can no longer be replayed (:meth:`ReplayGuard.purge`: the table would
    otherwise grow by every query), delete the hit references past the follow-up period
    (:func:`expire_hit_references`, hourly), issue a checkpoint when the log grew or the
    last one aged (every ``interval_s``, at most :data:`CHECKPOINT_POLL_S` apart; the peers'
    refusals counted but not logged one by one go in first, as ``refusals_suppressed``), and
    log how this node's own PKI documents stand when that changed (:class:`PkiWatch`), and
    last bring the index of sent queries up to the log (:func:`index_sent_queries`, a bounded
    number of chunks a round). Nothing here waits for a peer: that is :func:`_witnessing`'s,
    so a slow or hostile peer cannot hold back a revocation or a suspended rule."""
    while True:
        await anyio.sleep(min(interval_s, CHECKPOINT_POLL_S))
        await housekeeping_round(exchange, interval_s)


async def housekeeping_round(exchange: Exchange, interval_s: float) -> None:
    """One round of :func:`_housekeeping`. No step's failure ends the task: it ran in the
    node's lifespan task group, so an exception there (a full disk while the held file was
    written) tore the exchange and the gallery down while the API went on answering."""
    if exchange.rules_file is not None:
        try:
            await anyio.to_thread.run_sync(exchange.rules_file.check)
        except Exception:  # e.g. the event not logged: the rules in force stay, retried
            logger.exception("policy_file reload failed")
    try:
        await anyio.to_thread.run_sync(exchange.credentials.reload)
    except CertsError as exc:  # the held documents stay in place
        logger.warning("trust list/CRL not reloaded: %s", exc.reason)
    except Exception:  # e.g. the held file not written: what was accepted is in use
        logger.exception("trust list/CRL reload failed")
    if exchange.own is not None:  # renewed own certificates, checked against what is held
        try:
            await anyio.to_thread.run_sync(exchange.own.check)
        except Exception:  # the pair in use stays; the next round retries
            logger.exception("own certificates not reloaded")
    try:
        await anyio.to_thread.run_sync(exchange.pki_watch.check)
    except Exception:  # the exchange refuses by itself all the same; the next round retries
        logger.exception("checking this node's PKI documents failed")
    try:
        await anyio.to_thread.run_sync(exchange.responder.replay.purge)
    except Exception:  # the nonces stay (refusing replays); the next round retries
        logger.exception("replay nonces not purged")
    if time.monotonic() - exchange.hits_expired_at >= HIT_EXPIRY_EVERY_S:
        try:
            await anyio.to_thread.run_sync(expire_hit_references, exchange)
        except Exception:  # the next round retries (the deletion, or the event of one done)
            logger.exception("hit references not expired, or their expiry not logged")
    try:  # refusals_suppressed of peers that stopped flooding: in the log before the checkpoint
        await anyio.to_thread.run_sync(exchange.responder.flush_refusal_summaries)
    except Exception:  # the counts stay; the next round retries
        logger.exception("suppressed refusals not logged")
    try:
        await anyio.to_thread.run_sync(exchange.log.maybe_issue_checkpoint, interval_s)
    except Exception:  # keep the node serving; the next round retries
        logger.exception("exchange log checkpoint failed")
    if exchange.retention_days is not None and (
        time.monotonic() - exchange.pruned_at >= RETENTION_EVERY_S
    ):
        try:  # before the index: it forgets the queries pruned, in the pruning's transaction
            await anyio.to_thread.run_sync(apply_retention, exchange)
        except Exception:  # nothing half-done (one transaction a batch); the next run retries
            logger.exception("exchange log retention failed")
    try:  # last: its first catch-up after an upgrade is long (bounded per round)
        await anyio.to_thread.run_sync(index_sent_queries, exchange)
    except Exception:  # readings catch up a little or answer 503; the next round retries
        logger.exception("sent queries not indexed")


def apply_retention(exchange: Exchange) -> retention.RetentionReport | None:
    """Delete the exchange log's entry bytes and the audit trail's events from before
    ``exchange_log_days`` (:func:`node.audit.retention.prune`, at most
    ``retention.ROUND_BATCHES`` batches: a backlog goes over the next runs, which then come
    every round until it is gone). Its log line gives counts, never contents."""
    if exchange.retention_days is None:
        return None
    exchange.pruned_at = time.monotonic()  # a run that fails is retried in an hour
    report = retention.prune(
        exchange.log,
        exchange.log.engine,
        exchange.retention_days,
        max_batches=retention.ROUND_BATCHES,
    )
    if not report.complete and report.reason is None:  # a backlog: the next round goes on
        exchange.pruned_at = float("-inf")
    # A run stopped for a reason (an entry whose store time is in the future or unproven)
    # is tried again in an hour, as a failed one: every round would repeat its warning.
    if report.entries_pruned or report.audit_events_deleted:
        logger.info(
            "retention: %d exchange log entries pruned (below index %d), %d sent queries and "
            "%d audit trail events deleted%s",
            report.entries_pruned,
            report.boundary,
            report.sent_queries_deleted,
            report.audit_events_deleted,
            "" if report.complete else "; more next round",
        )
    return report


def index_sent_queries(exchange: Exchange) -> bool:
    """Index the sent queries logged since the last catch-up
    (:meth:`~node.repositories.sent_queries.SentQueryIndex.catch_up`), so that officers'
    readings of their history find it current: after an upgrade to revision 0011 the first
    catch-up reads the whole log (about 30 s a million entries), here rather than in requests
    (which catch up a few chunks at most, and answer 503 ``history_indexing`` when the index is
    further behind). At most ``QUERY_INDEX_ROUND_CHUNKS`` chunks a round, so the other steps
    of the next round are not held back; returns whether the index caught up."""
    with Session(exchange.log.engine) as session:
        return SentQueryIndex(exchange.log, session).catch_up(params.QUERY_INDEX_ROUND_CHUNKS)


def expire_hit_references(exchange: Exchange) -> int:
    """Delete the hit references past the follow-up period (:meth:`HitReferences.expire`);
    the exchange log gets a ``hit_references_expired`` event (how many, issued before when)
    when there were any. Returns how many. Deleted references whose event could not be
    logged are counted into the next round's event (the rows are gone: that round would
    find none)."""
    count, cutoff = exchange.responder.hits.expire()
    exchange.hits_expired_at = time.monotonic()
    if count and cutoff is not None:
        logger.info("%d hit references past the follow-up period deleted", count)
        earlier, _ = exchange.unlogged_expiry or (0, cutoff)
        exchange.unlogged_expiry = (earlier + count, cutoff)
    if exchange.unlogged_expiry is not None:
        total, before = exchange.unlogged_expiry
        exchange.responder.log.record(
            {
                "type": "hit_references_expired",
                "node": exchange.credentials.country,
                "at": datetime.now(UTC).isoformat(),
                "count": total,
                "issued_before": before.isoformat(),
            }
        )
        exchange.unlogged_expiry = None
    return count


async def _witnessing(exchange: Exchange, interval_s: float) -> None:
    """Have the peers witness this node's latest checkpoint, and every
    ``VIEW_COMPARE_INTERVAL_S`` compare what this node cosigned for each peer's log with what
    the other peers cosigned (:func:`witnessing_round`), in a task of its own beside
    :func:`_housekeeping`."""
    while True:
        await anyio.sleep(min(interval_s, CHECKPOINT_POLL_S))
        await witnessing_round(exchange)


async def witnessing_round(exchange: Exchange) -> None:
    """One round of :func:`_witnessing`; a failure is logged and the next round retries.
    Every peer exchange has ``peer_timeout_s`` in all (:func:`witness_round`,
    :func:`compare_views`). Nothing is asked while this node's own documents make the
    exchange refuse: the peers are not at fault, and :class:`PkiWatch` says why once."""
    if await anyio.to_thread.run_sync(exchange.pki_watch.refusal) is not None:
        return
    peers = list(exchange.peers.values())
    try:
        await witness_round(exchange.log, exchange.credentials, peers, exchange.peer_timeout_s)
    except Exception:  # keep the node serving; the next round retries
        logger.exception("witnessing failed")
    if time.monotonic() - exchange.views_compared_at >= VIEW_COMPARE_INTERVAL_S:
        exchange.views_compared_at = time.monotonic()
        try:
            await compare_views(
                exchange.witness, exchange.credentials, peers, exchange.peer_timeout_s
            )
        except Exception:  # keep the node serving; the next comparison retries
            logger.exception("comparing witnesses' views failed")


@asynccontextmanager
async def exchange_running(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """Set ``app.state.exchange/responder/requester/exchange_log`` and run checkpoints.

    A no-op when the settings configure no exchange (no ``pki_dir``/``policy_file``) or the
    node has no gallery set.
    """
    galleries = app.state.gallery
    if not settings.exchange_enabled or not isinstance(galleries, GallerySet):
        yield
        return
    exchange = await anyio.to_thread.run_sync(build_exchange, settings, app.state.engine, galleries)
    app.state.exchange = exchange
    app.state.responder = exchange.responder
    app.state.requester = exchange.requester
    app.state.exchange_log = exchange.log
    app.state.witness = exchange.witness
    await anyio.to_thread.run_sync(exchange.pki_watch.check)  # an ERROR at start if refusing
    stop_mirroring = mirror_actions(app.state.sessions, exchange.log, exchange.credentials.country)
    await anyio.to_thread.run_sync(
        exchange.log.maybe_issue_checkpoint, settings.checkpoint_interval_s
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_housekeeping, exchange, settings.checkpoint_interval_s)
            tg.start_soon(_witnessing, exchange, settings.checkpoint_interval_s)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        stop_mirroring()
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            try:  # the counts of refusals not logged one by one, whose window is still open
                await anyio.to_thread.run_sync(
                    partial(exchange.responder.flush_refusal_summaries, closing=True)
                )
            except Exception:
                logger.exception("suppressed refusals not logged")
        app.state.responder = app.state.requester = app.state.exchange = None
        app.state.witness = None
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await exchange.requester.aclose()
        if exchange.search_pool is not None:
            await anyio.to_thread.run_sync(exchange.search_pool.close)
