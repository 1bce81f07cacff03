# keys_guard: a PGXS extension.  `make && make install`, then
# `make installcheck` against a server started with
# shared_preload_libraries = 'keys_guard' (see README.md).

MODULE_big = keys_guard
OBJS = \
	src/keys_guard.o \
	src/hooks.o \
	src/statement.o \
	src/acting.o \
	src/context.o \
	src/catalog.o \
	src/names.o \
	src/isolation.o \
	src/soft_delete.o \
	src/recovery.o \
	src/purge.o \
	src/utility.o \
	src/keyholder.o \
	src/control.o \
	src/audit.o \
	src/redact.o \
	src/apikey.o \
	src/token.o \
	src/migrate.o \
	src/worker.o

# Every file includes src/keys_guard.h (and src/compat.h): a change to either
# rebuilds them all, or link-time optimisation would join objects compiled
# against two versions of the same declarations.
KG_HEADERS = src/keys_guard.h src/compat.h

EXTENSION = keys_guard
DATA = keys_guard--1.2.sql keys_guard--1.2--1.3.sql \
	keys_guard--1.0.sql keys_guard--1.0--1.1.sql keys_guard--1.1--1.2.sql
PGFILEDESC = "keys_guard - multi-tenant safety for PostgreSQL"
# OpenSSL's libcrypto, which PostgreSQL links too: verified tokens
# (src/token.c) and the hash of API keys (src/apikey.c).
SHLIB_LINK += -lcrypto
# The hooks run at every statement, and what they cost is mostly the
# instruction-cache lines they take (bench/README.md, "Where the time
# goes").  Link-time optimisation compiles the library as one unit, so the
# hooks' calls into keys_guard's other files are inlined; in one partition,
# so that the functions every statement runs (kg_statement_path in
# src/keys_guard.h) end up next to each other, on a page or two; -fno-plt calls
# PostgreSQL's functions through the GOT instead of a PLT stub on a line of
# its own (PostgreSQL loads libraries with RTLD_NOW: nothing is bound
# lazily anyway).
PG_CFLAGS = -flto=auto -flto-partition=one -fno-plt

REGRESS = setup names tenants context isolation pooled audit library soft_delete purge templates guard_rails guard_holes attacks attacks_more api_key_attacks doctor operations api_keys redaction tokens migrations attack_review upgrade
REGRESS_OPTS = --inputdir=. --dbname=keys_guard_regress

# Concurrency (pg_isolation_regress): specs/*.spec with expected/*.out.
ISOLATION = delete_delete delete_restore restore_hard_delete restore_purge api_key_revoke token_revoke guard_change context_schema_fills
ISOLATION_OPTS = --load-extension=keys_guard

# The version is set in one place, default_version in keys_guard.control;
# the library gets it from there (src/catalog.c reports it).
KG_CONTROL := $(dir $(firstword $(MAKEFILE_LIST)))keys_guard.control
EXTVERSION := $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" $(KG_CONTROL))
ifeq ($(EXTVERSION),)
$(error could not read default_version from $(KG_CONTROL))
endif

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -DKG_EXTENSION_VERSION=\"$(EXTVERSION)\" \
	-Wall -Wmissing-prototypes -Werror

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# A new default_version rebuilds the file that reports it.
src/catalog.o: $(KG_CONTROL)

$(OBJS): $(KG_HEADERS)
