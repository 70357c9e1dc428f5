-- v2: the peripheral catalog's verdict an agent attached (a serialised
-- v1.CatalogVerdict), as of the instance's last observation.
ALTER TABLE peripheral_instances ADD COLUMN catalog bytea;
