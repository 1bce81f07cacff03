-- Correctness checks of bench/tenants.sh, run as bench_app in each database
-- before the measurements and after every round: the context really
-- isolates, with the first and the last tenants of the database.  Prints
-- one line per check, which the script compares with what it expects.
-- psql variables: rows (rows per tenant), last (the highest tenant id),
-- last_table (the highest tenant id with a table), all_rows (0/1: the
-- database has pooled_invoices_all).  Ids are tenant-specific, so the
-- ranges printed show whose rows were seen.
\set QUIET on
\set ON_ERROR_STOP off
\set VERBOSITY sqlstate
\pset tuples_only on
\pset format unaligned
\set QUIET on

-- Schema per tenant (bench_app: the context puts the tenant's schema first
-- on search_path).
BEGIN;
SELECT keys_guard.set_context('1', 'bench') \g /dev/null
SELECT 'schema own 1: ' || count(*) || ' ' || min(id) || '-' || max(id) FROM invoices;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('1', 'bench') \g /dev/null
SELECT count(*) FROM tenant_2.invoices;
\echo 'schema 1 reads 2:' :SQLSTATE
ROLLBACK;
BEGIN;
SELECT keys_guard.set_context(:'last_table', 'bench') \g /dev/null
SELECT 'schema own last: ' || count(*) || ' ' || min(id) || '-' || max(id) FROM invoices;
COMMIT;
BEGIN;
SELECT keys_guard.set_context(:'last', 'bench') \g /dev/null
SELECT count(*) FROM tenant_1.invoices;
\echo 'schema last reads 1:' :SQLSTATE
ROLLBACK;
SELECT count(*) FROM tenant_1.invoices;
\echo 'schema no context:' :SQLSTATE

-- Pooled (bench_pool: pooled-only configuration, search_path untouched).
\connect - bench_pool
\set QUIET on
BEGIN;
SELECT keys_guard.set_context('1', 'bench') \g /dev/null
SELECT 'pooled own 1: ' || count(*) || ' ' || min(tenant_id) || '-' || max(tenant_id) FROM pooled_invoices;
COMMIT;
BEGIN;
SELECT keys_guard.set_context('1', 'bench') \g /dev/null
SELECT count(*) FROM pooled_invoices WHERE tenant_id = '2';
\echo 'pooled 1 names 2:' :SQLSTATE
ROLLBACK;
SELECT count(*) FROM pooled_invoices;
\echo 'pooled no context:' :SQLSTATE
\if :all_rows
BEGIN;
SELECT keys_guard.set_context(:'last', 'bench') \g /dev/null
SELECT 'pooled_all own last: ' || count(*) || ' ' || min(tenant_id) || '-' || max(tenant_id) FROM pooled_invoices_all;
COMMIT;
BEGIN;
SELECT keys_guard.set_context(:'last', 'bench') \g /dev/null
SELECT count(*) FROM pooled_invoices_all WHERE tenant_id = '1';
\echo 'pooled_all last names 1:' :SQLSTATE
ROLLBACK;
\endif
