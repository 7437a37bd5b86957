"""The store's schema as versioned migrations (text, and the one function that runs one)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

# Each entry migrates from version i to i+1; never edit a released one, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                         by_hour INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE samples (series_id INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL);
    CREATE INDEX samples_series_ts ON samples (series_id, ts);
    CREATE INDEX samples_ts ON samples (ts);
    CREATE TABLE baselines (series_id INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
                            centre REAL NOT NULL, spread REAL NOT NULL, minimum REAL NOT NULL,
                            maximum REAL NOT NULL, last REAL NOT NULL, updated_at REAL NOT NULL,
                            PRIMARY KEY (series_id, hour)) WITHOUT ROWID;
    CREATE TABLE collector_state (name TEXT PRIMARY KEY, state TEXT NOT NULL,
                                  updated_at REAL NOT NULL);
    CREATE TABLE seen (namespace TEXT NOT NULL, key TEXT NOT NULL, first_seen REAL NOT NULL,
                       last_seen REAL NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID;
    CREATE TABLE findings (fingerprint TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL,
                           key TEXT NOT NULL, severity TEXT NOT NULL, floor TEXT NOT NULL,
                           summary TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
                           open INTEGER NOT NULL, resolved_at REAL, alerted_severity TEXT,
                           alerted_at REAL, details TEXT NOT NULL DEFAULT '{}');
    CREATE INDEX findings_open ON findings (open);
    CREATE TABLE finding_events (id INTEGER PRIMARY KEY, ts REAL NOT NULL,
                                 fingerprint TEXT NOT NULL, source TEXT NOT NULL,
                                 kind TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL);
    CREATE INDEX finding_events_ts ON finding_events (ts);
    CREATE TABLE outbox (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, channel TEXT NOT NULL,
                         purpose TEXT NOT NULL, fingerprint TEXT, severity TEXT NOT NULL,
                         payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued',
                         attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
                         sent_at REAL, last_error TEXT, dedupe_key TEXT UNIQUE);
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE TABLE recaps (day TEXT PRIMARY KEY, created_at REAL NOT NULL, outbox_id INTEGER);
    CREATE TABLE cycles (id INTEGER PRIMARY KEY, started_at REAL NOT NULL,
                         duration_s REAL NOT NULL, severity TEXT NOT NULL, by TEXT NOT NULL,
                         report TEXT NOT NULL);
    CREATE INDEX cycles_started ON cycles (started_at);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: a delivery whose outcome is unknown (the agent died mid-send) is re-sent as a possible
    # repeat: attempt_started_at is set, durably, before the network call and cleared after it.
    """
    ALTER TABLE outbox ADD COLUMN attempt_started_at REAL;
    ALTER TABLE outbox ADD COLUMN possible_repeat INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the operator's silences (ack FINGERPRINT, snooze KIND, maintenance; ended rows are kept
    # until retention, for the record) and the state of the services the agent depends on
    # (Ollama, Discord, Home Assistant, Docker), so a restart neither forgets nor re-logs an outage.
    """
    CREATE TABLE silences (id INTEGER PRIMARY KEY, type TEXT NOT NULL, target TEXT NOT NULL,
                           severity TEXT, created_at REAL NOT NULL, until REAL, ended_at REAL,
                           ended_why TEXT);
    CREATE INDEX silences_open ON silences (ended_at, type, target);
    CREATE TABLE dependencies (name TEXT PRIMARY KEY, up INTEGER NOT NULL, since REAL NOT NULL,
                               error TEXT, checked_at REAL NOT NULL);
    """,
    # 4: the local LLM runtimes' connections over time (foundation/store/connections.py), for the
    # dashboard's history and insights across restarts.
    """
    CREATE TABLE llm_connections (runtime TEXT NOT NULL, remote TEXT NOT NULL,
                                  port INTEGER NOT NULL, direction TEXT NOT NULL,
                                  class TEXT NOT NULL, organisation TEXT NOT NULL,
                                  rdns TEXT NOT NULL, first_seen REAL NOT NULL,
                                  last_seen REAL NOT NULL, cycles INTEGER NOT NULL,
                                  PRIMARY KEY (runtime, remote, port, direction));
    CREATE INDEX llm_connections_seen ON llm_connections (last_seen);
    """,
    # 5: one finding's timeline (the dashboard's finding page) read through an index, not a scan
    # of every finding's events: the same cost with a year of history as with a day.
    """
    CREATE INDEX finding_events_fingerprint ON finding_events (fingerprint, ts);
    """,
    # 6: the findings page's list (the newest of a state) and the values to filter it by, read
    # through indexes instead of a scan and sort of every finding kept: an internet-facing sshd
    # leaves thousands of brute-force sources a year (bench/web_dashboard.py).
    """
    CREATE INDEX findings_seen ON findings (open, last_seen);
    CREATE INDEX findings_facets ON findings (kind, source, severity);
    """,
    # 7: what local processes sent to LLM providers over time (llm_traffic; foundation/store/
    # connections.py): counts and sizes per client and provider, never a prompt or a response.
    """
    CREATE TABLE llm_traffic (client TEXT NOT NULL, provider_key TEXT NOT NULL,
                              provider TEXT NOT NULL, exe TEXT NOT NULL, comm TEXT NOT NULL,
                              container TEXT NOT NULL, models TEXT NOT NULL,
                              endpoints TEXT NOT NULL, first_seen REAL NOT NULL,
                              last_seen REAL NOT NULL, cycles INTEGER NOT NULL,
                              requests INTEGER NOT NULL, streaming INTEGER NOT NULL,
                              request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL,
                              input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
                              secret_requests INTEGER NOT NULL,
                              PRIMARY KEY (client, provider_key));
    CREATE INDEX llm_traffic_seen ON llm_traffic (last_seen);
    """,
)


def apply_migration(conn: sqlite3.Connection, number: int) -> None:
    """Run migration ``number`` (from version ``number`` to ``number + 1``) on a connection."""
    for statement in MIGRATIONS[number].split(";"):
        if statement.strip():
            conn.execute(statement)
