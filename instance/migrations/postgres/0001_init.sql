-- Flows: every revision is kept; a deletion is a tombstone revision.
CREATE TABLE flows (
    namespace  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    revision   BIGINT  NOT NULL,
    source     TEXT    NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (namespace, id, revision)
);

-- Executions double as the work queue: unfinished rows are claimed with a
-- lease (owner + expiry in microseconds since the epoch) under
-- FOR UPDATE SKIP LOCKED.
CREATE TABLE executions (
    id             TEXT    PRIMARY KEY,
    namespace      TEXT    NOT NULL,
    flow_id        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    finished       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    kill_requested BOOLEAN NOT NULL DEFAULT FALSE,
    body           TEXT    NOT NULL
);
CREATE INDEX executions_queue ON executions (created_at) WHERE NOT finished;
CREATE INDEX executions_flow ON executions (namespace, flow_id, created_at);
CREATE INDEX executions_created ON executions (created_at);

CREATE TABLE logs (
    seq            BIGSERIAL PRIMARY KEY,
    execution_id   TEXT   NOT NULL,
    task_run_id    TEXT,
    task_id        TEXT,
    attempt_number BIGINT NOT NULL,
    level          TEXT   NOT NULL,
    message        TEXT   NOT NULL,
    ts             BIGINT NOT NULL
);
CREATE INDEX logs_execution ON logs (execution_id, seq);
