-- The retention sweep finds ended executions by when they ended.
CREATE INDEX executions_ended ON executions (finished, updated_at);
