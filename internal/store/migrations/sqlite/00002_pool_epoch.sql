-- +goose Up
-- The seed generation of the pool's Redis state: bumped at every reseed, checked by
-- every reservation, so a Redis state from an older generation never gets a lease.
ALTER TABLE pools ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE pools DROP COLUMN epoch;
