/* SPDX-License-Identifier: MIT */
/*
 * wt_weftd.c: the weftd launcher of tests/net (see wt_weftd.h). The child's
 * stdout is a pipe: the first line gives the port; a detached thread then copies
 * whatever else it prints to our stderr until the pipe closes, so the child
 * never blocks on a full pipe. PR_SET_PDEATHSIG makes sure a crashed or
 * aborted test does not leave servers behind.
 */
#define _GNU_SOURCE
#include "wt_weftd.h"
#include "wt_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef WEFTD_PATH
#define WEFTD_PATH "weftd"
#endif

static const char *binary_of(const wt_weftd_t *d)
{
    return d->binary ? d->binary : WEFTD_PATH;
}

static void *drain_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(2, buf + off, (size_t)(n - off));
            if (w <= 0)
                break;
            off += w;
        }
    }
    close(fd);
    return NULL;
}

/* Reads the first line from fd within the deadline; returns its length or -1. */
static int read_line(int fd, char *line, size_t cap, int64_t deadline)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int w = poll(&p, 1, wt_ms_left(deadline));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (c == '\n')
            break;
        line[n++] = c;
    }
    line[n] = 0;
    return (int)n;
}

static int reap(wt_weftd_t *d, int options)
{
    int status;
    pid_t r;
    do {
        r = waitpid(d->pid, &status, options);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return 1; /* still running */
    d->pid = 0;
    if (r < 0)
        d->last_status = WT_ESPAWN;
    else if (WIFEXITED(status))
        d->last_status = WEXITSTATUS(status);
    else
        d->last_status = WIFSIGNALED(status) ? -WTERMSIG(status) : WT_ESPAWN;
    return 0;
}

static int launch(wt_weftd_t *d, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + timeout_ms;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return WT_ESPAWN;
    char listen_arg[] = "127.0.0.1:0";
    const char *argv[WT_WEFTD_MAX_ARGS + 8];
    size_t a = 0;
    argv[a++] = binary_of(d);
    argv[a++] = "--listen";
    argv[a++] = listen_arg;
    argv[a++] = "--data";
    argv[a++] = d->data_dir;
    for (size_t i = 0; d->args[i] != NULL; i++)
        argv[a++] = d->args[i];
    argv[a] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return WT_ESPAWN;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(pfd[1], 1);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "wt_weftd: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    d->pid = pid;
    char line[256];
    int n = read_line(pfd[0], line, sizeof line, deadline);
    const char *prefix = "weftd: listening on http://",
               *tls_prefix = "weftd: listening on https://";
    char *colon = n > 0 && (strncmp(line, prefix, strlen(prefix)) == 0 ||
                            strncmp(line, tls_prefix, strlen(tls_prefix)) == 0)
                      ? strrchr(line, ':')
                      : NULL;
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "wt_weftd: no listening line from %s (got \"%s\")\n", argv[0],
                n >= 0 ? line : "");
        close(pfd[0]);
        wt_weftd_kill(d);
        return WT_ESPAWN;
    }
    d->port = (uint16_t)port;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, drain_thread, (void *)(intptr_t)pfd[0]) != 0)
        close(pfd[0]);
    pthread_attr_destroy(&attr);
    return 0;
}

int wt_weftd_make_dir(wt_weftd_t *d)
{
    if (d->own_dir)
        return 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(d->data_dir, sizeof d->data_dir, "%s/weftd-test-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(d->data_dir) == NULL) {
        d->data_dir[0] = 0;
        return WT_ESPAWN;
    }
    d->own_dir = 1;
    return 0;
}

int wt_weftd_start(wt_weftd_t *d, const char *data_dir, const char *const *extra_args,
                   int timeout_ms)
{
    if (d->pid != 0)
        return WT_EINVAL;
    for (size_t i = 0; i < WT_WEFTD_MAX_ARGS && d->args[i]; i++) {
        free(d->args[i]);
        d->args[i] = NULL;
    }
    for (size_t i = 0; extra_args && extra_args[i] && i + 1 < WT_WEFTD_MAX_ARGS; i++)
        d->args[i] = strdup(extra_args[i]);
    if (data_dir != NULL) {
        snprintf(d->data_dir, sizeof d->data_dir, "%s", data_dir);
        d->own_dir = 0;
    } else if (wt_weftd_make_dir(d) != 0) {
        return WT_ESPAWN;
    }
    return launch(d, timeout_ms);
}

int wt_weftd_restart(wt_weftd_t *d, int timeout_ms)
{
    if (d->pid != 0 || d->data_dir[0] == 0)
        return WT_EINVAL;
    return launch(d, timeout_ms);
}

int wt_weftd_signal(wt_weftd_t *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    return kill(d->pid, sig);
}

int wt_weftd_wait(wt_weftd_t *d, int timeout_ms)
{
    if (d->pid <= 0)
        return d->last_status;
    int64_t deadline = wt_now_ms() + timeout_ms;
    for (;;) {
        if (reap(d, WNOHANG) == 0)
            return d->last_status;
        if (wt_ms_left(deadline) == 0)
            return WT_ETIMEOUT;
        usleep(5000);
    }
}

int wt_weftd_stop(wt_weftd_t *d, int timeout_ms)
{
    if (d->pid <= 0)
        return d->last_status;
    kill(d->pid, SIGTERM);
    int rc = wt_weftd_wait(d, timeout_ms);
    if (rc == WT_ETIMEOUT) {
        fprintf(stderr, "wt_weftd: pid %d did not exit %d ms after SIGTERM: killed\n", (int)d->pid,
                timeout_ms);
        wt_weftd_kill(d);
        d->last_status = WT_ETIMEOUT;
    }
    return rc;
}

int wt_weftd_kill(wt_weftd_t *d)
{
    if (d->pid <= 0)
        return 0;
    kill(d->pid, SIGKILL);
    reap(d, 0);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void wt_weftd_cleanup(wt_weftd_t *d)
{
    wt_weftd_kill(d);
    if (d->own_dir && d->data_dir[0])
        nftw(d->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    d->own_dir = 0;
    d->data_dir[0] = 0;
    for (size_t i = 0; i < WT_WEFTD_MAX_ARGS && d->args[i]; i++) {
        free(d->args[i]);
        d->args[i] = NULL;
    }
}

long wt_proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

long wt_proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = strlen(field);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            kb = strtol(line + n, NULL, 10);
    fclose(f);
    return kb;
}

int wt_proc_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

int wt_run_capture(const char *binary, const char *const *args, char **output, int timeout_ms)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return WT_ESPAWN;
    const char *argv[WT_WEFTD_MAX_ARGS + 2];
    size_t a = 0;
    argv[a++] = binary ? binary : WEFTD_PATH;
    for (size_t i = 0; args && args[i] && a < WT_WEFTD_MAX_ARGS; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return WT_ESPAWN;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    int64_t deadline = wt_now_ms() + timeout_ms;
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    if (out == NULL)
        abort();
    for (;;) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int w = poll(&p, 1, wt_ms_left(deadline));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        if (len + 1024 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            if (out == NULL)
                abort();
        }
        ssize_t n = read(pfd[0], out + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = 0;
    close(pfd[0]);
    wt_weftd_t tmp = {.pid = pid};
    int rc = wt_weftd_wait(&tmp, wt_ms_left(deadline));
    if (rc == WT_ETIMEOUT) {
        wt_weftd_kill(&tmp);
        rc = WT_ETIMEOUT;
    }
    if (output)
        *output = out;
    else
        free(out);
    return rc;
}
