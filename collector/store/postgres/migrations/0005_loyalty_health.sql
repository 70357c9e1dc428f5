-- v5: loyalty health (docs/scoring.md): account managers' overrides of a
-- business factor, one daily snapshot per customer (trends are computed
-- from them) and the churn-risk changes, with their reasons. customer_id
-- leads every key (docs/scale-out.md).
CREATE TABLE overrides(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  factor text NOT NULL,
  value double precision NOT NULL,
  reason text NOT NULL,
  expires_ms bigint NOT NULL,
  created_ms bigint NOT NULL,
  PRIMARY KEY(customer_id, factor));
CREATE TABLE health_snapshots(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  day_ms bigint NOT NULL,
  tps double precision, lhi double precision,
  coverage double precision NOT NULL,
  risk text NOT NULL,
  recorded_ms bigint NOT NULL,
  PRIMARY KEY(customer_id, day_ms));
CREATE TABLE risk_events(
  customer_id bigint NOT NULL REFERENCES customers(customer_id),
  at_ms bigint NOT NULL,
  from_risk text NOT NULL,
  to_risk text NOT NULL,
  reasons text NOT NULL,
  PRIMARY KEY(customer_id, at_ms));
