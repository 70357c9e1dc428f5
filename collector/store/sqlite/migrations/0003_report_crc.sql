-- v3: each raw report carries the CRC-32C of its body, checked whenever
-- the body is read back, so a damaged row is found and never scored.
ALTER TABLE reports ADD COLUMN body_crc INTEGER;
UPDATE reports SET body_crc = dp_crc32c(body);
