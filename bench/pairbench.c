/*
 * pairbench: time two workloads transaction by transaction, one
 * transaction of each in turn, so that both see the machine in the same
 * state.
 *
 * pgbench compares two servers, or two login roles, only by running one
 * after the other, and on a shared virtual machine the speed changes by
 * 10 % or more from one second to the next (bench/README.md, "Measuring on
 * a shared machine").  pairbench holds one connection per side and
 * alternates: a transaction on A then on B, on B then on A, and so on, with
 * the same random values on both, timing each from sending its first
 * statement to having its last result.  Whatever slows the machine down
 * slows both sides within microseconds of each other, so the ratio of the
 * mean latencies is steady where the ratio of two pgbench runs is not.
 *
 *   pairbench [-T seconds] [-W seconds] [-M prepared|simple] [-s seed]
 *             [-r range] [-d data.tsv] [-c sql | -f script_a -f script_b]
 *             [-b burst] [-u [-P pid]] CONNINFO_A CONNINFO_B
 *
 * A transaction is a script: one SQL statement per line (empty lines and
 * lines starting with "--" are skipped; write BEGIN and COMMIT yourself),
 * the same for both sides with -c (default: pgbench -S's statement,
 * "SELECT abalance FROM pgbench_accounts WHERE aid = :key"), or one per
 * side with two -f.  A statement names values as :name (not "::", a cast):
 *
 *   :key   a random integer in 1..range (-r, default 1000000: pgbench's
 *          scale 10), or, with -d data that has the columns key_lo and
 *          key_hi, in that row's key_lo..key_hi;
 *   :col   column col of the row of -d data.tsv (a header line of column
 *          names, then one row per line, tab-separated) that the
 *          transaction draws at random.
 *
 * Both sides of one turn get the same row and key.  -M prepared (the
 * default) prepares each statement once per connection, at its first
 * execution, its values as parameters, and sends Bind/Execute, as pgbench
 * -M prepared does (a statement that names a table through a search_path
 * that an earlier statement of the script sets is prepared after it); -M
 * simple sends the text with the values in it as literals.  A prepare's
 * time is not counted in its transaction's.
 *
 * -b runs that many transactions in a row on one side, then the same values
 * on the other (default 1): with a burst, each server runs warm between
 * turns, as under pgbench, instead of after the other side has had the
 * CPU's caches.
 *
 * After -W seconds of warm-up, both are timed for -T seconds; prints
 *
 *   a <transactions> <mean µs> b <transactions> <mean µs>
 *
 * and with -u, after that, "cpu <µs> <µs>": the CPU time each side's
 * backend took per transaction while timed, from the kernel's
 * /proc/<pid>/schedstat (the servers must run on this machine).  With -P
 * and the pid of a postmaster, also "other <µs>": the CPU time its other
 * processes took while timed (background workers, the WAL writer, the
 * postmaster itself), all of it, for the caller to charge to the side that
 * caused it.
 *
 * Exit status 1 on any error, with the server's message on stderr; 2 on a
 * usage error.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define DEFAULT_SQL "SELECT abalance FROM pgbench_accounts WHERE aid = :key"
#define MAX_STATEMENTS 16
#define MAX_PARAMS 8
#define MAX_COLUMNS 16
#define MAX_LINE 8192

/* One statement of a script, its :names turned into $1.. */
typedef struct Statement
{
	char	   *text;			/* with $n for prepared, :name for simple */
	char		name[16];		/* of the prepared statement */
	bool		is_prepared;	/* on this side's connection */
	int			nparams;
	int			param_var[MAX_PARAMS];	/* -1: :key; else a data column */
} Statement;

typedef struct Side
{
	const char *label;
	PGconn	   *conn;
	Statement	statements[MAX_STATEMENTS];
	int			nstatements;
	long		count;
	double		total_us;
	double		cpu_ns;			/* of its backend, while timed */
} Side;

/* The data of -d: column names and rows of values. */
static char *columns[MAX_COLUMNS];
static int	ncolumns = 0;
static char ***rows = NULL;
static long nrows = 0;
static int	key_lo_column = -1;
static int	key_hi_column = -1;

static bool prepared = true;

static void
usage_error(const char *message)
{
	fprintf(stderr, "pairbench: %s\n", message);
	exit(2);
}

static void *
checked_malloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
	{
		fprintf(stderr, "pairbench: out of memory\n");
		exit(1);
	}
	return p;
}

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
	fprintf(stderr, "pairbench: %s on %s failed: %s", what, side->label,
			res ? PQresultErrorMessage(res) : PQerrorMessage(side->conn));
	exit(1);
}

static int
column_index(const char *name, size_t len)
{
	for (int i = 0; i < ncolumns; i++)
		if (strlen(columns[i]) == len && strncmp(columns[i], name, len) == 0)
			return i;
	return -2;
}

/* Split a line at tabs into at most max fields (the line is modified). */
static int
split_tabs(char *line, char **fields, int max)
{
	int			n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	while (n < max)
	{
		fields[n++] = line;
		line = strchr(line, '\t');
		if (line == NULL)
			break;
		*line++ = '\0';
	}
	return n;
}

static void
read_data(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[MAX_LINE];
	long		allocated = 64;

	if (f == NULL)
	{
		fprintf(stderr, "pairbench: cannot open \"%s\": %s\n", path, strerror(errno));
		exit(2);
	}
	if (fgets(line, sizeof(line), f) == NULL)
		usage_error("the data file has no header line");
	{
		char	   *names[MAX_COLUMNS];

		ncolumns = split_tabs(line, names, MAX_COLUMNS);
		for (int i = 0; i < ncolumns; i++)
			columns[i] = strdup(names[i]);
	}
	key_lo_column = column_index("key_lo", 6);
	key_hi_column = column_index("key_hi", 6);
	if ((key_lo_column < 0) != (key_hi_column < 0))
		usage_error("the data has key_lo without key_hi or the other way round");
	rows = checked_malloc(allocated * sizeof(char **));
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *fields[MAX_COLUMNS];
		char	  **row;

		if (line[0] == '\n' || line[0] == '\0')
			continue;
		if (split_tabs(line, fields, MAX_COLUMNS) != ncolumns)
			usage_error("a data row has not as many fields as the header");
		row = checked_malloc(ncolumns * sizeof(char *));
		for (int i = 0; i < ncolumns; i++)
			row[i] = strdup(fields[i]);
		if (nrows == allocated)
		{
			allocated *= 2;
			rows = realloc(rows, allocated * sizeof(char **));
			if (rows == NULL)
				usage_error("out of memory");
		}
		rows[nrows++] = row;
	}
	fclose(f);
	if (nrows == 0)
		usage_error("the data file has no rows");
}

/*
 * Parse one statement: with -M prepared, each :name becomes the next $n.
 * In simple mode the text is kept and the values are put in at each run.
 */
static void
parse_statement(Statement *st, const char *sql, int number)
{
	char	   *out = checked_malloc(strlen(sql) * 2 + 16);
	char	   *o = out;
	const char *p = sql;

	st->nparams = 0;
	snprintf(st->name, sizeof(st->name), "s%d", number);
	while (*p)
	{
		if (p[0] == ':' && p[1] == ':')
		{
			*o++ = *p++;
			*o++ = *p++;
			continue;
		}
		if (p[0] == ':' && (isalpha((unsigned char) p[1]) || p[1] == '_'))
		{
			const char *name = p + 1;
			size_t		len = 0;
			int			var;

			while (isalnum((unsigned char) name[len]) || name[len] == '_')
				len++;
			if (len == 3 && strncmp(name, "key", 3) == 0)
				var = -1;
			else if ((var = column_index(name, len)) < 0)
			{
				fprintf(stderr, "pairbench: no value for :%.*s (not :key, not a data column)\n",
						(int) len, name);
				exit(2);
			}
			if (st->nparams == MAX_PARAMS)
				usage_error("too many values in one statement");
			st->param_var[st->nparams++] = var;
			if (prepared)
				o += sprintf(o, "$%d", st->nparams);
			else
				o += sprintf(o, "\x01");	/* where the value goes */
			p = name + len;
			continue;
		}
		*o++ = *p++;
	}
	*o = '\0';
	st->text = out;
}

static void
parse_script(Side *side, const char *script)
{
	char	   *copy = strdup(script);
	char	   *line = copy;

	side->nstatements = 0;
	while (line != NULL && *line != '\0')
	{
		char	   *next = strchr(line, '\n');

		if (next != NULL)
			*next++ = '\0';
		while (isspace((unsigned char) *line))
			line++;
		if (*line != '\0' && strncmp(line, "--", 2) != 0)
		{
			if (side->nstatements == MAX_STATEMENTS)
				usage_error("too many statements in a script");
			parse_statement(&side->statements[side->nstatements], line, side->nstatements);
			side->nstatements++;
		}
		line = next;
	}
	free(copy);
	if (side->nstatements == 0)
		usage_error("a script has no statement");
}

static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *text;
	long		size;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
	{
		fprintf(stderr, "pairbench: cannot read \"%s\": %s\n", path, strerror(errno));
		exit(2);
	}
	rewind(f);
	text = checked_malloc(size + 1);
	if (fread(text, 1, size, f) != (size_t) size)
	{
		fprintf(stderr, "pairbench: cannot read \"%s\"\n", path);
		exit(2);
	}
	text[size] = '\0';
	fclose(f);
	return text;
}

static void
connect_side(Side *side, const char *label, const char *conninfo)
{
	side->label = label;
	side->count = 0;
	side->total_us = 0;
	side->cpu_ns = 0;
	side->conn = PQconnectdb(conninfo);
	if (PQstatus(side->conn) != CONNECTION_OK)
		fail(side, "connection", NULL);
	for (int i = 0; i < side->nstatements; i++)
		side->statements[i].is_prepared = false;
}

/* Prepare a statement on its side's connection, the first time it runs. */
static void
prepare_statement(Side *side, Statement *st)
{
	PGresult   *res = PQprepare(side->conn, st->name, st->text, 0, NULL);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail(side, "prepare", res);
	PQclear(res);
	st->is_prepared = true;
}

/*
 * The text of a statement with its values in it, for -M simple: a whole
 * number as it is (as pgbench -M simple puts it), anything else quoted.
 */
static char *
simple_text(Side *side, Statement *st, const char **values)
{
	char	   *literals[MAX_PARAMS];
	size_t		size = strlen(st->text) + 1;
	char	   *text;
	char	   *o;
	int			n = 0;

	for (int i = 0; i < st->nparams; i++)
	{
		const char *v = values[i];
		bool		number = v[0] != '\0' && strspn(v, "0123456789") == strlen(v);

		literals[i] = NULL;		/* NULL: the value goes in as it is */
		if (!number)
		{
			literals[i] = PQescapeLiteral(side->conn, v, strlen(v));
			if (literals[i] == NULL)
				fail(side, "quoting a value", NULL);
		}
		size += strlen(literals[i] ? literals[i] : v);
	}
	text = o = checked_malloc(size);
	for (const char *p = st->text; *p; p++)
	{
		if (*p == '\x01')
		{
			o += sprintf(o, "%s", literals[n] ? literals[n] : values[n]);
			if (literals[n])
				PQfreemem(literals[n]);
			n++;
		}
		else
			*o++ = *p;
	}
	*o = '\0';
	return text;
}

/* Run one transaction (the whole script); add its time when timing. */
static void
run_script(Side *side, char **row, const char *key, bool timing)
{
	double		start = now_us();
	double		prepare_us = 0;	/* not timed: a first execution's prepare */

	for (int i = 0; i < side->nstatements; i++)
	{
		Statement  *st = &side->statements[i];
		const char *values[MAX_PARAMS];
		PGresult   *res;

		for (int j = 0; j < st->nparams; j++)
			values[j] = st->param_var[j] < 0 ? key : row[st->param_var[j]];
		if (prepared)
		{
			if (!st->is_prepared)
			{
				double		prepare_start = now_us();

				prepare_statement(side, st);
				prepare_us += now_us() - prepare_start;
			}
			res = PQexecPrepared(side->conn, st->name, st->nparams, values, NULL, NULL, 0);
		}
		else
		{
			char	   *text = simple_text(side, st, values);

			res = PQexec(side->conn, text);
			free(text);
		}
		if (PQresultStatus(res) != PGRES_TUPLES_OK &&
			PQresultStatus(res) != PGRES_COMMAND_OK)
			fail(side, "statement", res);
		PQclear(res);
	}
	if (timing)
	{
		side->total_us += now_us() - start - prepare_us;
		side->count++;
	}
}

/*
 * The CPU time, in nanoseconds, process pid has taken so far; 0 if it has
 * exited, unless it must be there.
 */
static double
schedstat_ns(int pid, bool must)
{
	char		path[64];
	FILE	   *f;
	double		ns = 0;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	f = fopen(path, "r");
	if ((f == NULL || fscanf(f, "%lf", &ns) != 1) && must)
	{
		fprintf(stderr, "pairbench: cannot read \"%s\" (-u needs the server on this machine)\n", path);
		exit(1);
	}
	if (f != NULL)
		fclose(f);
	return ns;
}

static double
backend_cpu_ns(Side *side)
{
	return schedstat_ns(PQbackendPID(side->conn), true);
}

/*
 * The CPU time of postmaster pid and of its children other than the two
 * backends.  A child that exits while timed is missed: none does in a run.
 */
static double
other_cpu_ns(int postmaster, Side *a, Side *b)
{
	DIR		   *proc = opendir("/proc");
	struct dirent *d;
	double		ns = schedstat_ns(postmaster, true);

	if (proc == NULL)
	{
		fprintf(stderr, "pairbench: cannot read /proc: %s\n", strerror(errno));
		exit(1);
	}
	while ((d = readdir(proc)) != NULL)
	{
		char		path[64];
		char		stat[512];
		FILE	   *f;
		int			pid = atoi(d->d_name);
		int			ppid;
		char	   *after;

		if (pid <= 0 || pid == PQbackendPID(a->conn) || pid == PQbackendPID(b->conn))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(stat, sizeof(stat), f) != NULL &&
			(after = strrchr(stat, ')')) != NULL &&
			sscanf(after, ") %*c %d", &ppid) == 1 && ppid == postmaster)
			ns += schedstat_ns(pid, false);
		fclose(f);
	}
	closedir(proc);
	return ns;
}

/* A turn's values: a data row and a key. */
typedef struct Turn
{
	char	  **row;
	char		key[32];
} Turn;

static void
draw_turn(Turn *turn, long range)
{
	long		lo = 1;
	long		hi = range;

	turn->row = nrows > 0 ? rows[random() % nrows] : NULL;
	if (turn->row != NULL && key_lo_column >= 0)
	{
		lo = atol(turn->row[key_lo_column]);
		hi = atol(turn->row[key_hi_column]);
		if (hi < lo)
			usage_error("a data row has key_hi below key_lo");
	}
	snprintf(turn->key, sizeof(turn->key), "%ld", lo + random() % (hi - lo + 1));
}

/*
 * Alternate for the given time: a burst of transactions on one side, then
 * the same values on the other, the order flipped at every turn.
 */
static void
alternate(Side *a, Side *b, double seconds, long range, long burst,
		  bool timing)
{
	double		end = now_us() + seconds * 1e6;
	bool		a_first = true;
	Turn	   *turns = checked_malloc(burst * sizeof(Turn));

	while (now_us() < end)
	{
		Side	   *first = a_first ? a : b;
		Side	   *second = a_first ? b : a;

		for (long i = 0; i < burst; i++)
			draw_turn(&turns[i], range);
		for (long i = 0; i < burst; i++)
			run_script(first, turns[i].row, turns[i].key, timing);
		for (long i = 0; i < burst; i++)
			run_script(second, turns[i].row, turns[i].key, timing);
		a_first = !a_first;
	}
	free(turns);
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
	const char *sql = NULL;
	const char *scripts[2] = {NULL, NULL};
	int			nscripts = 0;
	const char *data = NULL;
	long		burst = 1;
	bool		cpu = false;
	long		postmaster = 0;
	double		other_ns = 0;
	Side		a;
	Side		b;
	int			c;

	while ((c = getopt(argc, argv, "T:W:M:r:s:c:f:d:b:uP:")) != -1)
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
					usage_error("-M is prepared or simple");
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
			case 'f':
				if (nscripts == 2)
					usage_error("-f is given once for each side");
				scripts[nscripts++] = optarg;
				break;
			case 'd':
				data = optarg;
				break;
			case 'b':
				burst = number_arg("-b", optarg, 1);
				break;
			case 'u':
				cpu = true;
				break;
			case 'P':
				postmaster = number_arg("-P", optarg, 1);
				break;
			default:
				return 2;
		}
	}
	if (argc - optind != 2)
		usage_error("usage: pairbench [-T seconds] [-W seconds] [-M prepared|simple] [-s seed] [-r range] [-d data.tsv] [-c sql | -f script_a -f script_b] [-b burst] [-u [-P pid]] CONNINFO_A CONNINFO_B");
	if (nscripts == 1 || (nscripts == 2 && sql != NULL))
		usage_error("give -c, or -f twice (one script for each side)");
	if (postmaster != 0 && !cpu)
		usage_error("-P goes with -u");
	if (data != NULL)
		read_data(data);
	if (nscripts == 2)
	{
		parse_script(&a, read_file(scripts[0]));
		parse_script(&b, read_file(scripts[1]));
	}
	else
	{
		parse_script(&a, sql ? sql : DEFAULT_SQL);
		parse_script(&b, sql ? sql : DEFAULT_SQL);
	}
	srandom((unsigned int) seed);
	connect_side(&a, "A", argv[optind]);
	connect_side(&b, "B", argv[optind + 1]);
	alternate(&a, &b, warmup, range, burst, false);
	if (cpu)
	{
		a.cpu_ns = -backend_cpu_ns(&a);
		b.cpu_ns = -backend_cpu_ns(&b);
		if (postmaster != 0)
			other_ns = -other_cpu_ns((int) postmaster, &a, &b);
	}
	alternate(&a, &b, seconds, range, burst, true);
	if (cpu)
	{
		a.cpu_ns += backend_cpu_ns(&a);
		b.cpu_ns += backend_cpu_ns(&b);
		if (postmaster != 0)
			other_ns += other_cpu_ns((int) postmaster, &a, &b);
	}
	printf("a %ld %.3f b %ld %.3f", a.count, a.total_us / a.count,
		   b.count, b.total_us / b.count);
	if (cpu)
		printf(" cpu %.3f %.3f", a.cpu_ns / 1e3 / a.count, b.cpu_ns / 1e3 / b.count);
	if (postmaster != 0)
		printf(" other %.0f", other_ns / 1e3);
	printf("\n");
	PQfinish(a.conn);
	PQfinish(b.conn);
	return 0;
}
