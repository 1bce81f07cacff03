/* keys_guard--1.1--1.2.sql: closing the ways around the guarantees */

\echo Use "ALTER EXTENSION keys_guard UPDATE TO '1.2'" to load this file. \quit

