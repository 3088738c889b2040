/*
 * pstat.h - CPU time and memory of a process tree (rotord's master and its
 * workers) from /proc.
 */
#ifndef PSTAT_H
#define PSTAT_H

#include <sys/types.h>

#define PSTAT_MAX 256

struct pstat_proc {
	pid_t pid;
	double cpu_s;           /* utime + stime */
	long rss_kb, pss_kb;    /* pss_kb -1: smaps_rollup unreadable */
	long own_kb;            /* Pss_Anon + Pss_Shmem (Pss where the kernel
				 * has no such lines): PSS without shared
				 * libraries, whose share moves with the number
				 * of other processes mapping them */
};

struct pstat {
	int n;                  /* [0] is the master, the rest its children */
	double cpu_s;
	long rss_kb, pss_kb, own_kb;    /* sums */
	struct pstat_proc p[PSTAT_MAX];
};

/* The whole machine from the first line of /proc/stat, in seconds summed
 * over CPUs. */
#define PSTAT_CPUS 256

struct pstat_sys {
	double busy;            /* user + nice + system + irq + softirq */
	double softirq, steal, idle;
	int ncpu;
	double cpu_busy[PSTAT_CPUS], cpu_softirq[PSTAT_CPUS];   /* per CPU */
};

/* Samples the machine. Returns 0 or -1. */
int pstat_system(struct pstat_sys *out);

/* Samples pid and its live children. Returns 0, or -1 if pid is gone. */
int pstat_sample(pid_t pid, struct pstat *out);

/* CPU seconds of the tree between two samples, counting only processes
 * present in both (a worker replaced in between would skew it). */
double pstat_cpu_delta(const struct pstat *a, const struct pstat *b);

/* The pids of pid's children, at most max; returns how many. */
int pstat_children(pid_t pid, pid_t *out, int max);

#endif
