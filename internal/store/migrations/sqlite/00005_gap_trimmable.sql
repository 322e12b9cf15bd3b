-- +goose Up
-- A reseed's recovery gap is recorded wide, from the checkpoint, and trimmed once
-- Redis tells where the replaced state stopped. Only such gaps are trimmed: a
-- recovery gap recorded for numbers of a call whose answer may have reached no
-- one (its memo found left in place) holds numbers that state took, and stays.
ALTER TABLE gaps ADD COLUMN trimmable SMALLINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE gaps DROP COLUMN trimmable;
