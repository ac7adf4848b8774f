-- A user asked for a running execution to pause: its driver stops starting
-- task runs and parks it PAUSED once the running ones are done.
ALTER TABLE executions ADD COLUMN pause_requested BOOLEAN NOT NULL DEFAULT FALSE;
