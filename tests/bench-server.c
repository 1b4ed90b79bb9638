/* bench-server.c: `make bench-server`: how long N host peers take to connect
 * to a real `ivlab server` and be fully meshed, and the host-peer to
 * host-peer doorbell round trip next to a bare eventfd ping-pong (the floor).
 * Prints figures; asserts nothing about them. */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <glib/gstdio.h>

#include "ivlab.h"
#include "peer.h"
#include "server.h"
#include "serverctl.h"

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double *values, gsize n, double p)
{
	qsort(values, n, sizeof(*values), compare_double);
	gsize index = (gsize)(p * (n - 1) + 0.5);

	return values[MIN(index, n - 1)];
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what, GError *error)
{
	fprintf(stderr, "bench-server: %s: %s\n", what, error ? error->message : g_strerror(errno));
	exit(1);
}

static char *start_server(const char *ivlab, const char *dir, guint vectors)
{
	char *path = g_build_filename(dir, "bench.sock", NULL);
	struct server_options opts;
	g_autoptr(GError) error = NULL;

	server_options_init(&opts);
	opts.socket_path = path;
	opts.vectors = vectors;
	opts.size = 1 << 20;
	if (!serverctl_spawn_binary(ivlab, &opts, &error))
		die("starting the server", error);
	return path;
}

static void stop_server(const char *path)
{
	g_autoptr(GError) error = NULL;

	if (!serverctl_stop(path, 10000, &error))
		die("stopping the server", error);
}

/* Connect n peers one after another and handle notifications until each
 * holds every other's vectors: milliseconds. */
static double mesh_once(const char *path, guint n)
{
	g_autoptr(GPtrArray) peers = g_ptr_array_new_with_free_func((GDestroyNotify)peer_free);
	g_autoptr(GError) error = NULL;
	double start = now_us();

	for (guint i = 0; i < n; i++) {
		struct peer *peer = peer_connect(path, &error);

		if (!peer)
			die("connecting", error);
		g_ptr_array_add(peers, peer);
	}
	for (guint i = 0; i < n; i++)
		if (!peer_wait_peers(peers->pdata[i], n - 1, 30000, &error))
			die("meshing", error);
	double elapsed = (now_us() - start) / 1000.0;
	return elapsed;
}

static void bench_mesh(const char *ivlab, const char *dir, guint vectors, guint repeat)
{
	static const guint sizes[] = { 2, 16, 64 };

	printf("connect and mesh (%u vectors, median of %u; each peer: server query + setup):\n",
	       vectors, repeat);
	for (gsize s = 0; s < G_N_ELEMENTS(sizes); s++) {
		g_autofree double *times = g_new(double, repeat);

		for (guint r = 0; r < repeat; r++) {
			g_autofree char *path = start_server(ivlab, dir, vectors);

			times[r] = mesh_once(path, sizes[s]);
			stop_server(path);
		}
		double median = percentile(times, repeat, 0.5);
		printf("  %2u peers: %8.2f ms  (min %.2f, max %.2f)\n", sizes[s], median, times[0],
		       times[repeat - 1]);
	}
}

static void report(const char *what, double *rtt, gsize n)
{
	double median = percentile(rtt, n, 0.5);
	double p99 = percentile(rtt, n, 0.99);

	printf("  %-44s median %7.2f us   p99 %7.2f us\n", what, median, p99);
}

static void bench_peer_rtt(const char *ivlab, const char *dir, guint rounds, guint warmup)
{
	g_autofree char *path = start_server(ivlab, dir, 1);
	g_autofree double *rtt = g_new(double, rounds);
	g_autoptr(GError) error = NULL;
	pid_t child;
	int status;

	child = fork();
	if (child == 0) {
		g_autoptr(Peer) echo = peer_connect(path, &error);
		guint64 count;

		if (!echo || !peer_wait_peers(echo, 1, 10000, &error))
			die("echo peer", error);
		g_autoptr(GArray) ids = peer_list(echo);
		int other = (int)g_array_index(ids, guint, 0);
		for (guint i = 0; i < rounds + warmup; i++) {
			do
				if (!peer_wait(echo, 0, 10000, &count, &error))
					die("echo wait", error);
			while (count == 0);
			if (!peer_ring(echo, other, 0, &error))
				die("echo ring", error);
		}
		_exit(0);
	}
	g_autoptr(Peer) pinger = peer_connect(path, &error);
	if (!pinger || !peer_wait_peers(pinger, 1, 10000, &error))
		die("ping peer", error);
	g_autoptr(GArray) ids = peer_list(pinger);
	int echo_id = (int)g_array_index(ids, guint, 0);
	/* A ring before the echo knows us is not lost: eventfds count. */
	for (guint i = 0; i < rounds + warmup; i++) {
		guint64 count = 0;
		double start = now_us();

		if (!peer_ring(pinger, echo_id, 0, &error))
			die("ring", error);
		if (!peer_wait(pinger, 0, 10000, &count, &error) || count == 0)
			die("wait for the echo", error);
		if (i >= warmup)
			rtt[i - warmup] = now_us() - start;
	}
	waitpid(child, &status, 0);
	report("host peer <-> host peer (server's eventfds)", rtt, rounds);
	g_clear_pointer(&pinger, peer_free);
	stop_server(path);
}

static void bench_eventfd_floor(guint rounds, guint warmup)
{
	int ping = eventfd(0, EFD_CLOEXEC), pong = eventfd(0, EFD_CLOEXEC);
	g_autofree double *rtt = g_new(double, rounds);
	guint64 value = 1;
	pid_t child;
	int status;

	if (ping < 0 || pong < 0)
		die("eventfd", NULL);
	child = fork();
	if (child == 0) {
		for (guint i = 0; i < rounds + warmup; i++) {
			if (read(ping, &value, sizeof(value)) != sizeof(value))
				_exit(1);
			value = 1;
			if (write(pong, &value, sizeof(value)) != sizeof(value))
				_exit(1);
		}
		_exit(0);
	}
	for (guint i = 0; i < rounds + warmup; i++) {
		double start = now_us();

		value = 1;
		if (write(ping, &value, sizeof(value)) != sizeof(value) ||
		    read(pong, &value, sizeof(value)) != sizeof(value))
			die("eventfd ping-pong", NULL);
		if (i >= warmup)
			rtt[i - warmup] = now_us() - start;
	}
	waitpid(child, &status, 0);
	report("bare eventfd ping-pong, 2 processes (floor)", rtt, rounds);
}

int main(int argc, char **argv)
{
	g_autofree char *ivlab = NULL;
	int rounds = 20000, repeat = 5, vectors = 4;
	const GOptionEntry entries[] = {
		{ "ivlab", 0, 0, G_OPTION_ARG_FILENAME, &ivlab, "the ivlab binary", "PATH" },
		{ "rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "doorbell round trips (20000)", "N" },
		{ "repeat", 0, 0, G_OPTION_ARG_INT, &repeat, "mesh runs per size (5)", "N" },
		{ "vectors", 0, 0, G_OPTION_ARG_INT, &vectors, "vectors per peer for the mesh (4)", "N" },
		{ NULL }
	};
	g_autoptr(GOptionContext) context = g_option_context_new("- ivshmem server benchmark");
	g_autoptr(GError) error = NULL;
	struct rlimit limit;

	g_option_context_add_main_entries(context, entries, NULL);
	if (!g_option_context_parse(context, &argc, &argv, &error) || rounds < 1 || repeat < 1 ||
	    vectors < 1 || vectors > SERVER_VECTORS_MAX) {
		fprintf(stderr, "bench-server: %s\n", error ? error->message : "bad numbers");
		return 2;
	}
	if (!ivlab)
		ivlab = g_strdup(g_getenv("IVLAB") ? g_getenv("IVLAB") : "./ivlab");
	/* 64 peers in one process hold 64 * 64 * vectors eventfds. */
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
	g_autofree char *dir = g_dir_make_tmp("ivlab-bench-server.XXXXXX", NULL);
	if (!dir)
		die("temporary directory", NULL);
	printf("ivshmem server benchmark: %s, %ld CPUs\n", ivlab, sysconf(_SC_NPROCESSORS_ONLN));
	bench_mesh(ivlab, dir, (guint)vectors, (guint)repeat);
	printf("doorbell round trip (%d rounds after %d warm-up):\n", rounds, 1000);
	bench_peer_rtt(ivlab, dir, (guint)rounds, 1000);
	bench_eventfd_floor((guint)rounds, 1000);
	g_rmdir(dir);
	return 0;
}
