# keys_guard: a PGXS extension.  `make && make install`, then
# `make installcheck` against a server started with
# shared_preload_libraries = 'keys_guard' (see README.md).

MODULE_big = keys_guard
OBJS = \
	src/keys_guard.o \
	src/hooks.o \
	src/acting.o \
	src/context.o \
	src/catalog.o \
	src/isolation.o \
	src/soft_delete.o \
	src/recovery.o \
	src/purge.o \
	src/utility.o \
	src/control.o \
	src/audit.o \
	src/worker.o

EXTENSION = keys_guard
DATA = keys_guard--1.2.sql \
	keys_guard--1.0.sql keys_guard--1.0--1.1.sql keys_guard--1.1--1.2.sql
PGFILEDESC = "keys_guard - multi-tenant safety for PostgreSQL"

REGRESS = setup tenants context isolation pooled audit library soft_delete purge templates guard_rails guard_holes attacks attacks_more doctor operations upgrade
REGRESS_OPTS = --inputdir=. --dbname=keys_guard_regress

# Concurrency (pg_isolation_regress): specs/*.spec with expected/*.out.
ISOLATION = delete_delete delete_restore restore_hard_delete restore_purge
ISOLATION_OPTS = --load-extension=keys_guard

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wmissing-prototypes -Werror

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
