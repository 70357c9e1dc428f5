-- v1: the pipeline foundation.
CREATE TABLE customers(
  customer_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_ms INTEGER NOT NULL);
CREATE TABLE tokens(
  token_hash TEXT PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER) WITHOUT ROWID;
CREATE TABLE endpoints(
  endpoint_id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL,
  agent_id TEXT NOT NULL,
  hostname TEXT, os TEXT, kernel TEXT, agent_version TEXT,
  role INTEGER, site TEXT, pool TEXT,
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL DEFAULT 0,
  last_connect_ms INTEGER NOT NULL,
  UNIQUE(customer_id, agent_id));
CREATE TABLE streams(
  stream_id INTEGER PRIMARY KEY,
  endpoint_id INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  UNIQUE(endpoint_id, epoch));
-- Append-ordered by rowid; deliberately no secondary index (docs/architecture.md).
CREATE TABLE reports(
  customer_id INTEGER NOT NULL,
  endpoint_id INTEGER NOT NULL,
  stream_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  observed_at_ms INTEGER NOT NULL,
  received_at_ms INTEGER NOT NULL,
  body BLOB NOT NULL);
CREATE TABLE rollups(
  grain INTEGER NOT NULL,          -- 1 hour, 2 day
  customer_id INTEGER NOT NULL,
  endpoint_id INTEGER NOT NULL,    -- 0: the customer as a whole
  bucket_start_ms INTEGER NOT NULL,
  metric INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  hist BLOB,
  PRIMARY KEY(grain, customer_id, endpoint_id, bucket_start_ms, metric)) WITHOUT ROWID;
CREATE TABLE peripheral_instances(
  customer_id INTEGER NOT NULL,
  endpoint_id INTEGER NOT NULL,
  device_key TEXT NOT NULL,
  bus INTEGER, vendor_id INTEGER, product_id INTEGER, device_class INTEGER,
  interface_classes TEXT, name TEXT, drivers TEXT, redirected INTEGER, ieee1284_id TEXT,
  last_state INTEGER, last_reason TEXT,
  first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, last_fail_ms INTEGER NOT NULL,
  observations INTEGER NOT NULL, fail_observations INTEGER NOT NULL, reconnects INTEGER NOT NULL,
  PRIMARY KEY(customer_id, endpoint_id, device_key)) WITHOUT ROWID;
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
-- Raw rows of slice (endpoint_id % 16) up to through_rowid are in the rollups.
CREATE TABLE rollup_marks(slice INTEGER PRIMARY KEY, through_rowid INTEGER NOT NULL);
