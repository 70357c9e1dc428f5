-- v9: the webhooks' outbox (docs/metrics.md): an event waits here until its
-- webhook answers 2xx, so a restart loses none; (webhook, event_key) is the
-- idempotency key, so the same event queued twice is delivered once.
CREATE TABLE webhook_deliveries(
  delivery_id INTEGER PRIMARY KEY,
  webhook TEXT NOT NULL,
  event_key TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  delivered_ms INTEGER,
  abandoned_ms INTEGER,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE(webhook, event_key));
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook, next_attempt_ms)
  WHERE delivered_ms IS NULL AND abandoned_ms IS NULL;
