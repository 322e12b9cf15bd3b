-- +goose Up
-- The refill lock is a lease on the pool row: its holder, its fencing token (raised
-- at every acquisition; a refill write carrying an older token is refused) and its
-- expiry by the database's clock, in unix microseconds.
ALTER TABLE pools ADD COLUMN refill_owner TEXT NULL;
ALTER TABLE pools ADD COLUMN refill_fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pools ADD COLUMN refill_lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refill_jobs ADD COLUMN segment_id INTEGER NULL;

-- +goose Down
ALTER TABLE refill_jobs DROP COLUMN segment_id;
ALTER TABLE pools DROP COLUMN refill_lease_until;
ALTER TABLE pools DROP COLUMN refill_fence;
ALTER TABLE pools DROP COLUMN refill_owner;
