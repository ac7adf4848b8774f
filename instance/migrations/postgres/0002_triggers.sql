-- Executions a process must not claim before a time: parked (QUEUED by a
-- concurrency limit, PAUSED) executions wait here instead of holding a lease.
ALTER TABLE executions ADD COLUMN not_before BIGINT NOT NULL DEFAULT 0;
-- Labels as `\x1fkey=value\x1f...` for searching.
ALTER TABLE executions ADD COLUMN labels TEXT NOT NULL DEFAULT '';
UPDATE executions SET labels = chr(31) || COALESCE((
    SELECT string_agg((l ->> 'key') || '=' || (l ->> 'value'), chr(31) ORDER BY ord) || chr(31)
    FROM jsonb_array_elements(body::jsonb -> 'labels') WITH ORDINALITY AS t(l, ord)), '');
DROP INDEX executions_queue;
CREATE INDEX executions_queue ON executions (not_before, created_at) WHERE NOT finished;

-- What each trigger has done: the last tick a schedule handled (its cursor)
-- and the last execution any trigger started.
CREATE TABLE trigger_state (
    namespace         TEXT    NOT NULL,
    flow_id           TEXT    NOT NULL,
    trigger_id        TEXT    NOT NULL,
    cursor_at         BIGINT,
    disabled          BOOLEAN NOT NULL DEFAULT FALSE,
    last_execution_id TEXT,
    last_fired_at     BIGINT,
    PRIMARY KEY (namespace, flow_id, trigger_id)
);

-- One row per trigger event (a schedule tick): inserted in the same
-- transaction as the execution it starts, so an event fires at most once
-- however many processes see it.
CREATE TABLE trigger_events (
    namespace    TEXT    NOT NULL,
    flow_id      TEXT    NOT NULL,
    trigger_id   TEXT    NOT NULL,
    event_key    TEXT    NOT NULL,
    execution_id TEXT,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (namespace, flow_id, trigger_id, event_key)
);
CREATE INDEX trigger_events_age ON trigger_events (created_at);
