-- +goose Up
-- How many numbers below next a checkpoint saw taken by calls whose memos were
-- still in place: their answers may have reached no one, and no gap holds them
-- yet. A reseed after the loss of the Redis state, memos and all, starts its
-- recovery gap that far below next; next itself stays the highest cursor seen,
-- the floor a state gone back in time is measured against.
ALTER TABLE segments ADD COLUMN held BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE segments DROP COLUMN held;
