-- v4: business signals imported per customer (docs/signals.md), each by its
-- natural key so that a later row with the same key replaces the earlier
-- one. customer_id leads every key (docs/scale-out.md). signal_imports
-- holds no customer's data, only the digests of the files already applied
-- (so that the same file again is a no-op): a directory table, like
-- customers.
CREATE TABLE surveys(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  date_ms bigint NOT NULL,
  nps double precision, ces double precision, ves double precision,
  respondents bigint NOT NULL,
  imported_ms bigint NOT NULL,
  PRIMARY KEY(customer_id, date_ms));
CREATE TABLE tickets(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  ticket_id text NOT NULL,
  opened_ms bigint NOT NULL,
  first_response_ms bigint,
  resolved_ms bigint,
  severity text NOT NULL,
  imported_ms bigint NOT NULL,
  PRIMARY KEY(customer_id, ticket_id));
CREATE TABLE contracts(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  tier text NOT NULL,
  annual_value double precision NOT NULL,
  start_ms bigint NOT NULL,
  renewal_ms bigint NOT NULL,
  renewal_status text NOT NULL,
  expected_savings double precision, realised_savings double precision,
  sla_boot_s double precision, sla_boot_pct double precision,
  sla_rtt_ms double precision, sla_rtt_pct double precision,
  sla_peripherals_pct double precision, sla_availability_pct double precision,
  imported_ms bigint NOT NULL,
  PRIMARY KEY(customer_id));
CREATE TABLE business_reviews(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  date_ms bigint NOT NULL,
  imported_ms bigint NOT NULL,
  PRIMARY KEY(customer_id, date_ms));
CREATE TABLE signal_imports(
  kind text NOT NULL,
  content_sha256 text NOT NULL,
  rows bigint NOT NULL,
  imported_ms bigint NOT NULL,
  PRIMARY KEY(kind, content_sha256));
