-- +goose Up
-- Times are unix microseconds written by numberd; none of them decides correctness.
CREATE TABLE pools (
    id               TEXT NOT NULL PRIMARY KEY,
    digits           INTEGER NOT NULL,
    refill_threshold INTEGER NOT NULL,
    upstream         TEXT NULL,
    refill_quantity  INTEGER NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- A segment's numbers are prefix followed by lo..hi zero-padded to the pool's width.
-- reserved_hi is the durable high-water mark: no number above it has ever been
-- handed out. next is the last checkpointed cursor: every number below it is issued
-- or in a gap.
CREATE TABLE segments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pool        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    lo          INTEGER NOT NULL,
    hi          INTEGER NOT NULL,
    state       TEXT NOT NULL,
    source      TEXT NOT NULL,
    ref         TEXT NULL,
    ywlsh       TEXT NULL,
    expires_at  INTEGER NULL,
    reserved_hi INTEGER NOT NULL,
    next        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX segments_by_range ON segments (pool, prefix, lo);

CREATE TABLE gaps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    pool       TEXT NOT NULL,
    segment_id INTEGER NOT NULL,
    lo         INTEGER NOT NULL,
    hi         INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    UNIQUE (segment_id, lo)
);
CREATE INDEX gaps_by_pool ON gaps (pool, id);

CREATE TABLE idempotency (
    pool        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    numbers     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (pool, scope, idem_key)
);
CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);

-- One row per upstream download (ywlsh), written before the first call.
CREATE TABLE refill_jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    pool       TEXT NOT NULL,
    ywlsh      TEXT NOT NULL UNIQUE,
    quantity   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    fence      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX refill_jobs_by_pool ON refill_jobs (pool, id);

-- +goose Down
DROP TABLE refill_jobs;
DROP TABLE idempotency;
DROP TABLE gaps;
DROP TABLE segments;
DROP TABLE pools;
