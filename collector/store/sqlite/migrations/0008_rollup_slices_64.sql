-- The rollup flush is cut into 64 slices by endpoint (endpoint_id % 64), not
-- 16: each slice's transaction holds the ingest writer a quarter as long.
-- Slice k of 64 holds some of the endpoints of slice k % 16 of old and none
-- of any other, so it starts from that slice's rolled-up-through mark.
INSERT OR IGNORE INTO rollup_marks(slice, through_rowid)
  SELECT old.slice + 16 * k.n, old.through_rowid
  FROM rollup_marks AS old, (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS k
  WHERE old.slice < 16;
