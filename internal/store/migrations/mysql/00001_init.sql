-- +goose Up
-- Times are unix microseconds written by numberd; none of them decides correctness.
CREATE TABLE pools (
    id               VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    digits           INT NOT NULL,
    refill_threshold BIGINT NOT NULL,
    upstream         VARCHAR(64) NULL,
    refill_quantity  BIGINT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
) ENGINE = InnoDB;

-- A segment's numbers are prefix followed by lo..hi zero-padded to the pool's width.
-- reserved_hi is the durable high-water mark: no number above it has ever been
-- handed out. next is the last checkpointed cursor: every number below it is issued
-- or in a gap.
CREATE TABLE segments (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pool        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    prefix      VARCHAR(14) CHARACTER SET ascii NOT NULL,
    lo          BIGINT NOT NULL,
    hi          BIGINT NOT NULL,
    state       VARCHAR(16) CHARACTER SET ascii NOT NULL,
    source      VARCHAR(16) CHARACTER SET ascii NOT NULL,
    ref         VARCHAR(256) NULL,
    ywlsh       VARCHAR(64) NULL,
    expires_at  BIGINT NULL,
    reserved_hi BIGINT NOT NULL,
    next        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    INDEX segments_by_range (pool, prefix, lo)
) ENGINE = InnoDB;

CREATE TABLE gaps (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pool       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    segment_id BIGINT NOT NULL,
    lo         BIGINT NOT NULL,
    hi         BIGINT NOT NULL,
    reason     VARCHAR(16) CHARACTER SET ascii NOT NULL,
    at         BIGINT NOT NULL,
    UNIQUE KEY gaps_once (segment_id, lo),
    INDEX gaps_by_pool (pool, id)
) ENGINE = InnoDB;

CREATE TABLE idempotency (
    pool        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    scope       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    idem_key    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint VARCHAR(64) CHARACTER SET ascii NOT NULL,
    numbers     MEDIUMTEXT CHARACTER SET ascii NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (pool, scope, idem_key),
    INDEX idempotency_by_expiry (expires_at)
) ENGINE = InnoDB;

-- One row per upstream download (ywlsh), written before the first call.
CREATE TABLE refill_jobs (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pool       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    ywlsh      VARCHAR(64) CHARACTER SET ascii NOT NULL,
    quantity   BIGINT NOT NULL,
    state      VARCHAR(16) CHARACTER SET ascii NOT NULL,
    attempts   INT NOT NULL DEFAULT 0,
    last_error VARCHAR(1024) NULL,
    fence      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY refill_jobs_ywlsh (ywlsh),
    INDEX refill_jobs_by_pool (pool, id)
) ENGINE = InnoDB;

-- +goose Down
DROP TABLE refill_jobs;
DROP TABLE idempotency;
DROP TABLE gaps;
DROP TABLE segments;
DROP TABLE pools;
