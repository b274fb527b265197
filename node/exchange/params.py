"""Tunables of the peer exchange, each with its reason."""

from __future__ import annotations

from datetime import timedelta

#: JWS ``typ`` of a query and of a reply: a reply can never be replayed as a query.
QUERY_TYP = "bdx-query+jws"
REPLY_TYP = "bdx-reply+jws"

#: Accepted clock difference between a message's creation time and now. Nodes run NTP; five
#: minutes tolerates drift and queueing while keeping the nonce table small.
REPLAY_WINDOW = timedelta(minutes=5)

#: Strength bands of a hit by the estimated false match rate of its score. A "strong" hit is one
#: an impostor reaches less than once in a million comparisons; "moderate" once in ten thousand.
STRONG_MAX_FMR = 1e-6
MODERATE_MAX_FMR = 1e-4

#: How long the responder waits for a search before answering 202 with a status URL. Most
#: searches finish well within it; a border officer's client keeps polling after that.
SYNC_WAIT_SECONDS = 2.0
#: How long a finished reply stays available at its status URL (memory only).
PENDING_TTL_SECONDS = 600.0

#: Requester side: largest reply body read from a peer (bytes). A signed reply (payload, header,
#: x5c chain) is a few kilobytes; a peer sending megabytes is misbehaving, not answering.
MAX_REPLY_BYTES = 256 * 1024

#: Requester side: per-peer deadline for the whole exchange (send + polling) and the backoff of
#: the polls (first delay, factor, cap).
PEER_TIMEOUT_SECONDS = 30.0
#: The whole-exchange deadline exceeds the per-operation HTTP timeout by this much, so a single
#: stalled operation is ended by the HTTP client (which closes its connection) first.
DEADLINE_GRACE_SECONDS = 0.5
POLL_FIRST_DELAY = 0.05
POLL_BACKOFF = 2.0
POLL_MAX_DELAY = 2.0

#: Pooled connections of a node's requester to each peer (each peer has its own pool): a few
#: concurrent officer queries each. A peer that stalls holds only its own connections: with one
#: pool of 100 for all peers, 150 queries to a stalled peer and a good one made the good one's
#: answers wait for the stalled one's deadline, or time out unasked.
MAX_CONNECTIONS_PER_PEER = 32
#: Idle keep-alive connections to a peer are reused for this long (saves a TLS handshake per
#: query, most of a loopback round trip), then closed.
KEEPALIVE_EXPIRY_SECONDS = 30.0

#: An exchange-log append whose database connection was lost (a PostgreSQL failover, a killed
#: backend, a network blip) is tried again on a fresh connection, this many times in all, this
#: far apart: the query's nonce, quota and hit reference were already committed, and an append
#: that failed once left the exchange out of the log (a reviewer's run: 2 of 12 hits). Only a
#: lost connection is retried: a lock timeout (SQLite's busy timeout) already waited its turn.
LOG_APPEND_ATTEMPTS = 3
LOG_APPEND_RETRY_S = 0.2
#: Before a retry, the log's last this many entries are searched for the append: a connection
#: lost after COMMIT went through leaves it there (a retry logged it twice, for good). The
#: retry follows within a second, in which a node appends far fewer entries than this.
LANDED_WINDOW = 1024

#: How often a node compares what it cosigned for each peer's log with what the other peers
#: cosigned (:func:`node.exchange.witnessing.compare_views`): a split view is caught within
#: this time. Each comparison is a request per (log, other peer) pair and, when the sizes
#: differ, one to the log: every 10 minutes keeps a region of 20 nodes under one request a
#: second at any node.
VIEW_COMPARE_INTERVAL_S = 600.0

#: Responder side: the share of the peer threads one peer's queries may hold at once (at least
#: one thread); its further queries wait for its own to end, in a queue of their own. Without
#: it one peer's parallel heavy queries (10 views of 255 minutiae: 184 ms of CPU each, for one
#: quota unit) filled the shared pool: another peer's median query went from 62 ms to 3 s. At
#: half, another peer's query always finds a thread free of the busy peer's (with 2 threads or
#: more), and one peer alone still uses half of the node's cores.
PEER_THREAD_SHARE = 0.5
#: Responder side: one peer's queries waiting for its share of the threads, beyond which its
#: query is answered 503 ``peer_busy``. A waiting query holds its body in memory (up to
#: ``MAX_QUERY_BYTES``): unbounded, one peer could park gigabytes. Twice a requester's
#: ``MAX_CONNECTIONS_PER_PEER``: an honest requester, whose open connections bound its queries
#: waiting here, never reaches it, also with queries it gave up on still in the queue.
PEER_QUEUED_QUERIES = 2 * MAX_CONNECTIONS_PER_PEER
#: Retry-After of a 503 ``peer_busy``: a queued query ends within a second or two.
PEER_BUSY_RETRY_AFTER_S = 2

#: Responder side: each peer's refusals that are its doing (``query_refused`` of any stage: a
#: body that is no JWS, a bad or refused signature, a stale or replayed query, a policy
#: refusal, a template refused before the search) are logged one by one while its token
#: bucket holds a token: ``REFUSAL_BURST`` at most, refilled at ``REFUSAL_RATE_PER_S``. Beyond
#: it a refusal is only counted. Without it one peer appended 200-270 log entries a second,
#: its quota untouched. What the peer is answered does not depend on the bucket for a query
#: whose signature verified: its signed refusal is owed and sent, so an honest peer refused
#: for a while (its quota spent, a purpose not allowed, its clock off) loses no answer, only
#: log lines one by one; only refusals before the signature is verified (nothing signed is
#: owed) are answered 429 beyond it. Refusals caused by this node's own state (its trust list,
#: CRL or certificates) take no token. Hence a slow refill: the first 30 refusals are logged,
#: then one every 10 s (8,640 a day at most per flooding peer, plus its summaries): the auditor
#: sees each reason (the summary counts them), the log grows by a bounded number of entries.
REFUSAL_BURST = 30.0
REFUSAL_RATE_PER_S = 0.1
#: The refusals beyond the bucket are summed per peer in one ``refusals_suppressed`` event
#: (their count and reasons) once the window opened by the first of them has closed (at the
#: next log append or housekeeping round) or when the node stops: at most one entry a minute
#: per flooding peer, and it shows within a minute or so.
REFUSAL_SUMMARY_WINDOW_S = 60.0
#: Retry-After of a 429 ``too_many_refusals``: a token comes back every 1 / REFUSAL_RATE_PER_S.
REFUSAL_RETRY_AFTER_S = 10
#: Log entries the index of sent queries (``node.repositories.sent_queries``) reads and writes
#: per transaction as it catches up with the log: its first catch-up on a large log (a million
#: entries, some seconds) keeps its progress chunk by chunk and holds the database's write
#: lock for a short while at a time (SQLite has one, appends wait on it); the entries of one
#: chunk are in memory together (a few MB). Also the most query ids asked in one IN list.
QUERY_INDEX_CHUNK = 5000
#: Chunks of the index's catch-up a reading of the query history runs itself (20,000 entries,
#: about half a second): more than a busy node appends between two housekeeping rounds, which
#: catch up the rest. An index further behind (after an upgrade, a restored database) answers
#: 503 ``history_indexing`` rather than a reading that waits for the whole log, or a partial one.
QUERY_INDEX_REQUEST_CHUNKS = 4
#: Retry-After (seconds) of a 503 ``history_indexing``: housekeeping's round comes at most a
#: minute apart and indexes about a million entries in 30 s.
QUERY_INDEX_RETRY_AFTER_S = 30
#: Chunks of the index's catch-up one housekeeping round runs (a million entries, about 30 s),
#: as its last step: a two-year log is indexed in one round after the upgrade, and the other
#: steps of the next round (revocations reloaded, the checkpoint) wait no longer than that
#: however far behind the index is.
QUERY_INDEX_ROUND_CHUNKS = 200
