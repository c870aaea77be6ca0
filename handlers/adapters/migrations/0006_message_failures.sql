-- Why the handler last asked SQS to redeliver a message, kept by message id: SQS keeps the id when it
-- moves the message to the DLQ, so `filequeue dlq list` can show the reason without the logs.
-- Rows older than the DLQ's retention (14 days) are removed by the writes themselves.
CREATE TABLE message_failures (
    message_id text PRIMARY KEY,
    receive_count integer NOT NULL,
    error_code text NOT NULL,
    error text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_failures_last_failed_at ON message_failures (last_failed_at);
