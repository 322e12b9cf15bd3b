-- +goose Up
-- Work a distributed node has yet to settle (an allocate call whose answer was
-- lost), kept here when Redis, where such work is kept otherwise, could not be
-- reached: another node settles it if its owner dies. entry is opaque to the
-- store; created_at is by the database's clock, in unix microseconds.
CREATE TABLE unsettled (
    pool       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    entry      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (pool, id)
);
CREATE INDEX unsettled_by_age ON unsettled (created_at);

-- +goose Down
DROP TABLE unsettled;
