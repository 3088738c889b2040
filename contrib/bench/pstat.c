/*
 * pstat.c - /proc sampling for pstat.h: /proc/<pid>/stat for the parent
 * pid, state, utime and stime (clock ticks); /proc/<pid>/status for VmRSS;
 * /proc/<pid>/smaps_rollup for Pss (the process's proportional share of
 * every page it maps, shared memory included, so the sum over the tree
 * counts each page once) and its anonymous and shmem parts.
 */
#include "pstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads the stat line of pid: parent, state and CPU seconds. */
static int read_stat(pid_t pid, pid_t *ppid, char *state, double *cpu)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	/* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	unsigned long ut, st;
	int pp;
	if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   state, &pp, &ut, &st) != 4)
		return -1;
	*ppid = pp;
	*cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

/* The kB values of keys[0..n) in the file into v[] (-1: absent). */
static void read_kb(const char *path, const char *const *keys, long *v, int n)
{
	for (int i = 0; i < n; i++)
		v[i] = -1;
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f))
		for (int i = 0; i < n; i++) {
			size_t kl = strlen(keys[i]);
			if (strncmp(line, keys[i], kl) == 0)
				v[i] = strtol(line + kl, NULL, 10);
		}
	fclose(f);
}

static int sample_one(pid_t pid, struct pstat_proc *p)
{
	char path[64], state;
	pid_t ppid;
	if (read_stat(pid, &ppid, &state, &p->cpu_s) < 0 || state == 'Z')
		return -1;
	p->pid = pid;
	static const char *const status_keys[] = { "VmRSS:" };
	static const char *const smaps_keys[] = { "Pss:", "Pss_Anon:", "Pss_Shmem:" };
	long v[3];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	read_kb(path, status_keys, v, 1);
	p->rss_kb = v[0];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	read_kb(path, smaps_keys, v, 3);
	p->pss_kb = v[0];
	p->own_kb = v[1] >= 0 && v[2] >= 0 ? v[1] + v[2] : v[0];
	return 0;
}

int pstat_children(pid_t pid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		pid_t c = (pid_t)atoi(e->d_name), ppid;
		char state;
		double cpu;
		if (read_stat(c, &ppid, &state, &cpu) == 0 && ppid == pid && state != 'Z')
			out[n++] = c;
	}
	closedir(d);
	return n;
}

int pstat_sample(pid_t pid, struct pstat *out)
{
	memset(out, 0, sizeof(*out));
	if (sample_one(pid, &out->p[0]) < 0)
		return -1;
	out->n = 1;
	pid_t kids[PSTAT_MAX];
	int nk = pstat_children(pid, kids, PSTAT_MAX - 1);
	for (int i = 0; i < nk; i++)
		if (sample_one(kids[i], &out->p[out->n]) == 0)
			out->n++;
	for (int i = 0; i < out->n; i++) {
		out->cpu_s += out->p[i].cpu_s;
		out->rss_kb += out->p[i].rss_kb > 0 ? out->p[i].rss_kb : 0;
		out->pss_kb += out->p[i].pss_kb > 0 ? out->p[i].pss_kb : 0;
		out->own_kb += out->p[i].own_kb > 0 ? out->p[i].own_kb : 0;
	}
	return 0;
}

int pstat_system(struct pstat_sys *out)
{
	memset(out, 0, sizeof(*out));
	FILE *f = fopen("/proc/stat", "r");
	if (f == NULL)
		return -1;
	double tick = (double)sysconf(_SC_CLK_TCK);
	char line[512];
	int ok = -1;
	while (fgets(line, sizeof(line), f)) {
		/* cpuN user nice system idle iowait irq softirq steal */
		unsigned long long v[8] = { 0 };
		int cpu = -1, off = 0;
		if (strncmp(line, "cpu ", 4) == 0)
			off = 4;
		else if (sscanf(line, "cpu%d %n", &cpu, &off) < 1)
			continue;
		if (sscanf(line + off, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7]) < 7)
			continue;
		double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / tick;
		if (cpu < 0) {
			out->busy = busy;
			out->softirq = (double)v[6] / tick;
			out->idle = (double)(v[3] + v[4]) / tick;
			out->steal = (double)v[7] / tick;
			ok = 0;
		} else if (cpu < PSTAT_CPUS) {
			out->cpu_busy[cpu] = busy;
			out->cpu_softirq[cpu] = (double)v[6] / tick;
			if (cpu + 1 > out->ncpu)
				out->ncpu = cpu + 1;
		}
	}
	fclose(f);
	return ok;
}

double pstat_cpu_delta(const struct pstat *a, const struct pstat *b)
{
	double d = 0;
	for (int i = 0; i < b->n; i++)
		for (int j = 0; j < a->n; j++)
			if (a->p[j].pid == b->p[i].pid) {
				d += b->p[i].cpu_s - a->p[j].cpu_s;
				break;
			}
	return d;
}
