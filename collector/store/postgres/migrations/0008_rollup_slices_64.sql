-- Version 8 cuts the SQLite store's rollup flush into 64 slices. The shared
-- store's maintenance has no slices: nothing changes here, and the two
-- schemas' versions stay in step.
SELECT 1;
