-- v5: loyalty health (docs/scoring.md): account managers' overrides of a
-- business factor, one daily snapshot per customer (trends are computed
-- from them) and the churn-risk changes, with their reasons.
CREATE TABLE overrides(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  factor TEXT NOT NULL,
  value REAL NOT NULL,
  reason TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY(customer_id, factor)) WITHOUT ROWID;
CREATE TABLE health_snapshots(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  day_ms INTEGER NOT NULL,
  tps REAL, lhi REAL,
  coverage REAL NOT NULL,
  risk TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL,
  PRIMARY KEY(customer_id, day_ms)) WITHOUT ROWID;
CREATE TABLE risk_events(
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  at_ms INTEGER NOT NULL,
  from_risk TEXT NOT NULL,
  to_risk TEXT NOT NULL,
  reasons TEXT NOT NULL,
  PRIMARY KEY(customer_id, at_ms)) WITHOUT ROWID;
