/*
 * pairbench: time the same statement on two servers, one transaction on
 * each in turn, so that both see the machine in the same state.
 *
 * pgbench compares two servers only by running one after the other, and on
 * a shared virtual machine the speed changes by 10 % or more from one
 * second to the next (bench/README.md, "Measuring on a shared machine").
 * pairbench holds one connection to each server and alternates: the same
 * random key on A then on B, on B then on A, and so on, timing each
 * statement from sending it to having its result.  Whatever slows the
 * machine down slows both sides within microseconds of each other, so the
 * ratio of the mean latencies is steady where the ratio of two pgbench runs
 * is not.
 *
 *   pairbench [-T seconds] [-W seconds] [-M prepared|simple] [-r range]
 *             [-s seed] [-c sql] [-b burst] CONNINFO_A CONNINFO_B
 *
 * The statement (default: pgbench -S's "SELECT abalance FROM
 * pgbench_accounts WHERE aid = $1") runs in autocommit, its $1 a random
 * integer in 1..range (default 1000000, pgbench's scale 10).  -M prepared
 * (the default) prepares it once per connection and sends Bind/Execute, as
 * pgbench -M prepared does; -M simple sends the text with the number in it.
 * -b runs that many statements in a row on one side, then the same keys on
 * the other (default 1): with a burst, each server runs warm between
 * turns, as under pgbench, instead of after the other server has had the
 * CPU's caches.  After -W seconds of warm-up, both timed for -T seconds;
 * prints
 *
 *   a <statements> <mean µs> b <statements> <mean µs>
 *
 * Exit status 1 on any error, with the server's message on stderr.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define DEFAULT_SQL "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

typedef struct Side
{
	const char *name;
	PGconn	   *conn;
	long		count;
	double		total_us;
} Side;

static bool prepared = true;
static const char *sql = DEFAULT_SQL;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void
fail(Side *side, const char *what, PGresult *res)
{
	fprintf(stderr, "pairbench: %s on %s failed: %s", what, side->name,
			res ? PQresultErrorMessage(res) : PQerrorMessage(side->conn));
	exit(1);
}

static void
connect_side(Side *side, const char *name, const char *conninfo)
{
	PGresult   *res;

	side->name = name;
	side->count = 0;
	side->total_us = 0;
	side->conn = PQconnectdb(conninfo);
	if (PQstatus(side->conn) != CONNECTION_OK)
		fail(side, "connection", NULL);
	if (prepared)
	{
		res = PQprepare(side->conn, "s", sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail(side, "prepare", res);
		PQclear(res);
	}
}

/* Run the statement once with $1 = key; add its time when timing. */
static void
run_once(Side *side, long key, bool timing)
{
	char		value[32];
	const char *params[1];
	PGresult   *res;
	double		start;

	snprintf(value, sizeof(value), "%ld", key);
	params[0] = value;
	start = now_us();
	if (prepared)
		res = PQexecPrepared(side->conn, "s", 1, params, NULL, NULL, 0);
	else
	{
		char		text[1024];
		const char *mark = strstr(sql, "$1");

		if (mark == NULL)
			snprintf(text, sizeof(text), "%s", sql);
		else
			snprintf(text, sizeof(text), "%.*s%s%s", (int) (mark - sql), sql,
					 value, mark + 2);
		res = PQexec(side->conn, text);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
		PQresultStatus(res) != PGRES_COMMAND_OK)
		fail(side, "statement", res);
	PQclear(res);
	if (timing)
	{
		side->total_us += now_us() - start;
		side->count++;
	}
}

/*
 * Alternate for the given time: a turn of burst statements on one side,
 * then the same keys on the other, the order flipped at every turn.
 */
static void
alternate(Side *a, Side *b, double seconds, long range, long burst,
		  bool timing)
{
	double		end = now_us() + seconds * 1e6;
	bool		a_first = true;
	long	   *keys = malloc(burst * sizeof(long));

	if (keys == NULL)
	{
		fprintf(stderr, "pairbench: out of memory\n");
		exit(1);
	}
	while (now_us() < end)
	{
		for (long i = 0; i < burst; i++)
			keys[i] = 1 + random() % range;
		for (long i = 0; i < burst; i++)
			run_once(a_first ? a : b, keys[i], timing);
		for (long i = 0; i < burst; i++)
			run_once(a_first ? b : a, keys[i], timing);
		a_first = !a_first;
	}
	free(keys);
}

static long
number_arg(const char *opt, const char *arg, long min)
{
	char	   *end;
	long		value;

	errno = 0;
	value = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || value < min)
	{
		fprintf(stderr, "pairbench: %s must be a whole number >= %ld, not \"%s\"\n",
				opt, min, arg);
		exit(2);
	}
	return value;
}

int
main(int argc, char **argv)
{
	long		seconds = 10;
	long		warmup = 2;
	long		range = 1000000;
	long		seed = 1;
	long		burst = 1;
	Side		a;
	Side		b;
	int			c;

	while ((c = getopt(argc, argv, "T:W:M:r:s:c:b:")) != -1)
	{
		switch (c)
		{
			case 'T':
				seconds = number_arg("-T", optarg, 1);
				break;
			case 'W':
				warmup = number_arg("-W", optarg, 0);
				break;
			case 'M':
				if (strcmp(optarg, "prepared") == 0)
					prepared = true;
				else if (strcmp(optarg, "simple") == 0)
					prepared = false;
				else
				{
					fprintf(stderr, "pairbench: -M is prepared or simple\n");
					return 2;
				}
				break;
			case 'r':
				range = number_arg("-r", optarg, 1);
				break;
			case 's':
				seed = number_arg("-s", optarg, 0);
				break;
			case 'c':
				sql = optarg;
				break;
			case 'b':
				burst = number_arg("-b", optarg, 1);
				break;
			default:
				return 2;
		}
	}
	if (argc - optind != 2)
	{
		fprintf(stderr, "usage: pairbench [-T seconds] [-W seconds] [-M prepared|simple] [-r range] [-s seed] [-c sql] [-b burst] CONNINFO_A CONNINFO_B\n");
		return 2;
	}
	if (!prepared && strlen(sql) > 900)
	{
		fprintf(stderr, "pairbench: -c is too long for -M simple\n");
		return 2;
	}
	srandom((unsigned int) seed);
	connect_side(&a, "A", argv[optind]);
	connect_side(&b, "B", argv[optind + 1]);
	alternate(&a, &b, warmup, range, burst, false);
	alternate(&a, &b, seconds, range, burst, true);
	printf("a %ld %.3f b %ld %.3f\n", a.count, a.total_us / a.count,
		   b.count, b.total_us / b.count);
	PQfinish(a.conn);
	PQfinish(b.conn);
	return 0;
}
