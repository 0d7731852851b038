/* SPDX-License-Identifier: MIT */
/*
 * wt_weftd.h: starts and stops real weftd processes for integration tests and
 * the load generator. A server runs WEFTD_PATH (or an explicit binary) with
 * `--listen 127.0.0.1:0 --data DIR` plus extra arguments, on a fresh mkdtemp
 * data directory unless one is given; its port is read from the first stdout
 * line ("weftd: listening on http://127.0.0.1:<port>", or https:// with
 * TLS); the rest of its stdout is copied to stderr by a small thread and its
 * stderr is inherited, so its logs show up in test output. The child gets SIGKILL if the test
 * process dies. Stop with SIGTERM (exit status reported), kill with SIGKILL, restart on the same
 * data directory, clean up (kill + remove the temporary directory).
 */
#ifndef WEFT_WT_WEFTD_H
#define WEFT_WT_WEFTD_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define WT_WEFTD_MAX_ARGS 32

typedef struct {
    pid_t pid;     /* 0 when not running */
    uint16_t port; /* port of the last start */
    char data_dir[512];
    int own_dir;                   /* 1: the directory is temporary, removed by cleanup */
    const char *binary;            /* WEFTD_PATH unless set before the first start */
    char *args[WT_WEFTD_MAX_ARGS]; /* extra arguments (copies), NULL-terminated */
    int last_status;               /* exit code of the last stop/kill, or -signal; 0 before */
    void *_drain;                  /* stdout drain thread state */
} wt_weftd_t;

/*
 * Starts weftd. `data_dir` NULL: a fresh temporary directory (removed by
 * cleanup); otherwise that directory (kept). `extra_args` is NULL or a
 * NULL-terminated list of further arguments (copied, reused by restarts).
 * Waits up to `timeout_ms` for the listening line. Returns 0 (pid and port set),
 * or WT_ESPAWN (the child is killed and reaped; its stderr explains why).
 */
int wt_weftd_start(wt_weftd_t *d, const char *data_dir, const char *const *extra_args,
                   int timeout_ms);

/*
 * Creates the temporary data directory now (d->data_dir), so a test can put
 * files in it (certificates) before wt_weftd_start(d, NULL, ...), which then
 * uses it. Does nothing when the struct already has one. Returns 0 or WT_ESPAWN.
 */
int wt_weftd_make_dir(wt_weftd_t *d);

/*
 * Stops with SIGTERM and waits up to `timeout_ms` for the exit (then SIGKILL).
 * Returns the exit code (0 for a clean stop), -signal if a signal ended it, or
 * WT_ETIMEOUT (it had to be killed). Also stored in d->last_status.
 */
int wt_weftd_stop(wt_weftd_t *d, int timeout_ms);

/* Sends `sig` without waiting (for tests of SIGINT and the like). Returns 0 or -1. */
int wt_weftd_signal(wt_weftd_t *d, int sig);

/* Waits up to `timeout_ms` for the process to exit by itself; returns as stop(). */
int wt_weftd_wait(wt_weftd_t *d, int timeout_ms);

/* SIGKILL and reap. Returns 0 (or 0 if it was not running). */
int wt_weftd_kill(wt_weftd_t *d);

/* Starts again on the same data directory with the same arguments (the previous
 * process must be stopped or killed first). Returns as wt_weftd_start(). */
int wt_weftd_restart(wt_weftd_t *d, int timeout_ms);

/* Kills the process if running, removes a temporary data directory, frees the
 * argument copies. Safe to call twice and on a zeroed struct. */
void wt_weftd_cleanup(wt_weftd_t *d);

/* Resident set size of a process in KiB (VmRSS from /proc/<pid>/status), or -1. */
long wt_proc_rss_kb(pid_t pid);

/* A "Name:" field of /proc/<pid>/status in KiB (e.g. "RssAnon:"), or -1. */
long wt_proc_status_kb(pid_t pid, const char *field);

/* Number of open file descriptors of a process (entries of /proc/<pid>/fd), or -1. */
int wt_proc_fd_count(pid_t pid);

/*
 * Runs `binary` (WEFTD_PATH when NULL) with `args` (NULL-terminated, without
 * argv[0]) to completion, collecting its stdout+stderr into a malloc'd string
 * (*output, may be NULL to discard). Returns its exit code, -signal, or WT_ESPAWN.
 */
int wt_run_capture(const char *binary, const char *const *args, char **output, int timeout_ms);

#endif /* WEFT_WT_WEFTD_H */
