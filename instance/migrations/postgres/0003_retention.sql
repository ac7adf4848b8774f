-- The retention sweep finds ended executions by when they ended.
CREATE INDEX executions_ended ON executions (updated_at) WHERE finished;
