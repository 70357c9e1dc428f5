-- v3: each raw report carries the CRC-32C of its body, checked whenever the
-- body is read back, so a damaged row is found and never scored. (No
-- PostgreSQL store predates v3, so there are no rows to checksum here.)
ALTER TABLE reports ADD COLUMN body_crc bigint;
