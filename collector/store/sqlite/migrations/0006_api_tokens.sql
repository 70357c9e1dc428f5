-- v6: API bearer tokens (docs/api.md), stored as SHA-256 like enrollment
-- tokens: the vendor role reads every customer, a customer-admin one
-- customer.
CREATE TABLE api_tokens(
  token_id INTEGER PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  customer_id INTEGER REFERENCES customers(customer_id),
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER);
