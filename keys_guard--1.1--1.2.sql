/* keys_guard--1.1--1.2.sql: closing the ways around the guarantees */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.2'" to load this file. \quit


-- The worker of this database looks again once this update commits (it
-- stops purging while the SQL objects do not match the library).
SELECT keys_guard._notify_worker();
