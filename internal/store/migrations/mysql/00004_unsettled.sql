-- +goose Up
-- Work a distributed node has yet to settle (an allocate call whose answer was
-- lost), kept here when Redis, where such work is kept otherwise, could not be
-- reached: another node settles it if its owner dies. entry is opaque to the
-- store; created_at is by the database's clock, in unix microseconds.
CREATE TABLE unsettled (
    pool       VARCHAR(64)  NOT NULL,
    id         VARCHAR(190) NOT NULL,
    entry      MEDIUMTEXT   NOT NULL,
    created_at BIGINT       NOT NULL,
    PRIMARY KEY (pool, id),
    INDEX unsettled_by_age (created_at)
);

-- +goose Down
DROP TABLE unsettled;
