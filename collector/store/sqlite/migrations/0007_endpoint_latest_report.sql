-- v7: each endpoint's newest report (by observed time), written with its
-- last_seen_ms at rollup flush, so the API shows an endpoint's latest report
-- without searching the raw rows (which have no index by endpoint).
ALTER TABLE endpoints ADD COLUMN last_report BLOB;
