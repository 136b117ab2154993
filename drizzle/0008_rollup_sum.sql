-- The rollups' sum of bigints, kept as a bigint. Postgres's sum(bigint) returns numeric and keeps
-- a 128-bit state that it allocates per group; the rollup aggregates tens of thousands of groups
-- per batch into eleven sums each, and those allocations (and the page faults of the memory they
-- take) were a sixth of a batch's time. int8pl's state is the bigint itself (passed by value) and
-- it raises "bigint out of range" on overflow, as the `sum(…)::bigint` it replaces did for a
-- total past 2^63 (it can also raise on a running total past 2^63 that later inputs would bring
-- back: ledger figures are not negative). No input is NULL (the columns are NOT NULL); a group
-- always has a row. COMBINEFUNC and PARALLEL SAFE: the rebuild's scan runs parallel workers.
-- drizzle's schema cannot declare an aggregate, hence this hand-written migration.
CREATE AGGREGATE "rollup_sum"(bigint) (SFUNC = int8pl, STYPE = bigint, COMBINEFUNC = int8pl, PARALLEL = SAFE);
