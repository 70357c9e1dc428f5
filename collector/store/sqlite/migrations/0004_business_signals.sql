-- v4: business signals imported per customer (docs/signals.md), each by its
-- natural key so that a later row with the same key replaces the earlier
-- one, and the imports already applied, so that the same file again is a
-- no-op.
CREATE TABLE surveys(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  date_ms INTEGER NOT NULL,
  nps REAL, ces REAL, ves REAL,
  respondents INTEGER NOT NULL,
  imported_ms INTEGER NOT NULL,
  PRIMARY KEY(customer_id, date_ms)) WITHOUT ROWID;
CREATE TABLE tickets(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  ticket_id TEXT NOT NULL,
  opened_ms INTEGER NOT NULL,
  first_response_ms INTEGER,
  resolved_ms INTEGER,
  severity TEXT NOT NULL,
  imported_ms INTEGER NOT NULL,
  PRIMARY KEY(customer_id, ticket_id)) WITHOUT ROWID;
CREATE TABLE contracts(
  customer_id INTEGER PRIMARY KEY REFERENCES customers(customer_id),
  tier TEXT NOT NULL,
  annual_value REAL NOT NULL,
  start_ms INTEGER NOT NULL,
  renewal_ms INTEGER NOT NULL,
  renewal_status TEXT NOT NULL,
  expected_savings REAL, realised_savings REAL,
  sla_boot_s REAL, sla_boot_pct REAL, sla_rtt_ms REAL, sla_rtt_pct REAL,
  sla_peripherals_pct REAL, sla_availability_pct REAL,
  imported_ms INTEGER NOT NULL);
CREATE TABLE business_reviews(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  date_ms INTEGER NOT NULL,
  imported_ms INTEGER NOT NULL,
  PRIMARY KEY(customer_id, date_ms)) WITHOUT ROWID;
CREATE TABLE signal_imports(
  kind TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  rows INTEGER NOT NULL,
  imported_ms INTEGER NOT NULL,
  PRIMARY KEY(kind, content_sha256)) WITHOUT ROWID;
