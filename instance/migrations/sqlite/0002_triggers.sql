-- Executions a process must not claim before a time: parked (QUEUED by a
-- concurrency limit, PAUSED) executions wait here instead of holding a lease.
ALTER TABLE executions ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;
-- Labels as `\x1fkey=value\x1f...` for searching.
ALTER TABLE executions ADD COLUMN labels TEXT NOT NULL DEFAULT '';
UPDATE executions SET labels = char(31) || COALESCE((
    SELECT group_concat(json_extract(l.value, '$.key') || '=' || json_extract(l.value, '$.value'), char(31)) || char(31)
    FROM json_each(executions.body, '$.labels') AS l), '');
DROP INDEX executions_queue;
CREATE INDEX executions_queue ON executions (finished, not_before, created_at);

-- What each trigger has done: the last tick a schedule handled (its cursor)
-- and the last execution any trigger started.
CREATE TABLE trigger_state (
    namespace         TEXT    NOT NULL,
    flow_id           TEXT    NOT NULL,
    trigger_id        TEXT    NOT NULL,
    cursor_at         INTEGER,
    disabled          INTEGER NOT NULL DEFAULT 0,
    last_execution_id TEXT,
    last_fired_at     INTEGER,
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
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, flow_id, trigger_id, event_key)
);
CREATE INDEX trigger_events_age ON trigger_events (created_at);
