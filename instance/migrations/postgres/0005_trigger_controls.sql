-- What callers of the API set on a trigger, apart from what it has done
-- (trigger_state): disabled by a caller (a schedule so disabled does not
-- fire until enabled again), and the backfill in progress with its
-- progress, as JSON. Kept across restarts; deleted with the trigger's state.
CREATE TABLE trigger_controls (
    namespace   TEXT    NOT NULL,
    flow_id     TEXT    NOT NULL,
    trigger_id  TEXT    NOT NULL,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    backfill    TEXT,
    -- Bumped by every write: the trigger loop writes a backfill's progress
    -- only over the version it read, never over a caller's change.
    version     BIGINT  NOT NULL DEFAULT 0,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (namespace, flow_id, trigger_id)
);
