/* SPDX-License-Identifier: MIT */
/*
 * net-floor.c: what the kernel alone costs for weftd's many-documents shape.
 *
 * weftd's CPU per edit (bench/weft-load) includes the socket work every edit
 * needs: one read of the edit, its ACK to the author and one copy to each
 * other editor of the document, each a write to a loopback TCP socket whose
 * receiving end's TCP processing runs in the writer's system call. This
 * program does exactly those system calls and nothing else (no WebSocket
 * framing, no engine, no storage), so its CPU per edit is a floor no server
 * built on one TCP connection per editor can go under on this machine.
 *
 * Two processes. The child plays the editors: it opens N loopback
 * connections (editor i edits document i % D), sends fixed-size edits at a
 * fixed rate per editor, spread evenly over time, and reads everything that
 * comes back. The parent plays the server: one epoll loop that, for each edit
 * read, writes an ACK to its author and the edit to every other editor of its
 * document, one write(2) per recipient. Both ends set TCP_NODELAY. The parent
 * measures its own CPU (utime + stime, getrusage) over a window that starts
 * one second after the first edit; the child reports its CPU and the bytes it
 * received, so the output says whether everything arrived. One JSON line:
 * offered_edits_per_s is what the editors send, edits_per_s what the server
 * handled in the window; a server that cannot keep up handles fewer, and the
 * editors then receive fewer bytes than expected (exit status 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MESSAGE 4096
#define WARMUP_S 1.0

static struct {
    int connections, docs;
    double rate, duration;
    int edit_size, ack_size;
} opt = {5000, 1000, 2, 10, 46, 5};

/* What the child reports through its pipe when it is done. */
typedef struct {
    double cpu_s;
    uint64_t edits_sent, bytes_received;
    int errors;
} editors_report_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's CPU seconds (user + system), and the system part in *sys. */
static double cpu_s(double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return user + *sys;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt TCP_NODELAY");
}

/* Writes all of len bytes to a blocking socket; returns 0 or -1. */
static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The editors: connects, then sends edits at the rate and drains replies
 * until the run's end. Exits the process. */
static void run_editors(int port, int report_fd)
{
    int n = opt.connections;
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        die("calloc");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&addr, sizeof addr) != 0)
            die("editor connect");
        set_nodelay(fds[i]);
        uint32_t index = (uint32_t)i;
        if (write_all(fds[i], (const char *)&index, sizeof index) != 0)
            die("editor hello");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0)
            die("epoll_ctl");
    }
    char edit[MAX_MESSAGE];
    memset(edit, 'e', sizeof edit);
    char buf[65536];
    editors_report_t rep = {0};
    double interval = 1.0 / (opt.rate * n);
    double start = now_s(), end = start + WARMUP_S + opt.duration + 0.5, next = start;
    double drain_end = end + 1.5;
    int next_editor = 0;
    double sys, cpu0 = cpu_s(&sys);
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (t >= drain_end)
            break;
        while (t < end && next <= t) {
            if (write_all(fds[next_editor], edit, (size_t)opt.edit_size) != 0)
                rep.errors++;
            rep.edits_sent++;
            next_editor = (next_editor + 1) % n;
            next += interval;
        }
        /* Sleep to the next edit's turn, rounded up to a millisecond (as
         * bench/weft-load does): edits due meanwhile go out together. */
        double wait_s = (t < end ? next : drain_end) - now_s();
        int timeout_ms = wait_s > 0 ? (int)(wait_s * 1000) + 1 : 0;
        int k = epoll_wait(ep, evs, 256, timeout_ms);
        for (int j = 0; j < k; j++) {
            int fd = fds[evs[j].data.u32];
            ssize_t got = read(fd, buf, sizeof buf);
            if (got > 0) {
                rep.bytes_received += (uint64_t)got;
            } else if (got == 0 || errno != EAGAIN) {
                rep.errors++; /* the server hung up: stop watching it */
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            }
        }
    }
    rep.cpu_s = cpu_s(&sys) - cpu0;
    if (write_all(report_fd, (const char *)&rep, sizeof rep) != 0)
        die("report");
    _exit(0);
}

/* One accepted editor connection on the server side. */
typedef struct {
    int fd;
    int have; /* bytes of the current edit read so far */
} conn_t;

int main(int argc, char **argv)
{
    static const struct option longs[] = {{"connections", required_argument, 0, 'c'},
                                          {"docs", required_argument, 0, 'd'},
                                          {"rate", required_argument, 0, 'r'},
                                          {"duration", required_argument, 0, 't'},
                                          {"edit-size", required_argument, 0, 's'},
                                          {"ack-size", required_argument, 0, 'a'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:d:r:t:s:a:h", longs, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.connections = atoi(optarg);
            break;
        case 'd':
            opt.docs = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 't':
            opt.duration = atof(optarg);
            break;
        case 's':
            opt.edit_size = atoi(optarg);
            break;
        case 'a':
            opt.ack_size = atoi(optarg);
            break;
        default:
            fputs("usage: net-floor [--connections N] [--docs D] [--rate E] [--duration S]\n"
                  "                 [--edit-size B] [--ack-size B]\n"
                  "The kernel's cost of weftd's socket work alone: N editors of D documents\n"
                  "each send E edits/s of B bytes; a bare epoll server writes an ACK to the\n"
                  "author and the edit to every other editor of the document. Prints the\n"
                  "server's CPU per edit as JSON. Defaults: 5000, 1000, 2, 10, 46, 5.\n",
                  c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (opt.connections < 1 || opt.docs < 1 || opt.docs > opt.connections || opt.rate <= 0 ||
        opt.duration <= 0 || opt.edit_size < 1 || opt.edit_size > MAX_MESSAGE || opt.ack_size < 1 ||
        opt.ack_size > MAX_MESSAGE) {
        fputs("net-floor: bad option values (see --help)\n", stderr);
        return 2;
    }
    /* Each process holds one socket per editor: raise the soft limit to the
     * hard one, and refuse up front what would not fit (a child dying half
     * way would leave the parent waiting in accept). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)opt.connections + 16 > rl.rlim_cur) {
            fprintf(stderr, "net-floor: %d connections need more than RLIMIT_NOFILE %llu\n",
                    opt.connections, (unsigned long long)rl.rlim_cur);
            return 2;
        }
    }
    /* A server that falls behind still writes when the editors have gone. */
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(lfd, 4096) != 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0)
        die("listen");
    int pipefd[2];
    if (pipe(pipefd) != 0)
        die("pipe");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(lfd);
        close(pipefd[0]);
        run_editors(ntohs(addr.sin_port), pipefd[1]);
    }
    close(pipefd[1]);

    int n = opt.connections;
    conn_t *conns = calloc((size_t)n, sizeof *conns);
    if (!conns)
        die("calloc");
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        while (poll(&pfd, 1, 1000) == 0) {
            if (waitpid(child, NULL, WNOHANG) == child) {
                fprintf(stderr, "net-floor: the editors' process died after %d connections\n", i);
                return 2;
            }
        }
        int fd = accept(lfd, NULL, NULL);
        uint32_t index;
        if (fd < 0 || read(fd, &index, sizeof index) != (ssize_t)sizeof index ||
            index >= (uint32_t)n || conns[index].fd != 0)
            die("accept");
        set_nodelay(fd);
        conns[index].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl");
    }
    char ack[MAX_MESSAGE], edit[MAX_MESSAGE], buf[65536];
    memset(ack, 'a', sizeof ack);
    memset(edit, 'e', sizeof edit);
    uint64_t edits = 0, window_edits = 0;
    double first = 0, window_start = 0, window_s = 0, cpu0 = 0, sys0 = 0, cpu_window = 0,
           sys_window = 0;
    int in_window = 0, done = 0, open_conns = n, errors = 0;
    struct epoll_event evs[256];
    while (open_conns > 0) {
        int k = epoll_wait(ep, evs, 256, 100);
        double t = now_s();
        if (first > 0 && !in_window && !done && t >= first + WARMUP_S) {
            in_window = 1, window_start = t, window_edits = edits;
            cpu0 = cpu_s(&sys0);
        }
        if (in_window && t >= window_start + opt.duration) {
            in_window = 0, done = 1, window_s = t - window_start;
            cpu_window = cpu_s(&sys_window) - cpu0, sys_window -= sys0;
            window_edits = edits - window_edits;
        }
        for (int j = 0; j < k; j++) {
            uint32_t i = evs[j].data.u32;
            ssize_t got = read(conns[i].fd, buf, sizeof buf);
            if (got <= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
                close(conns[i].fd);
                open_conns--;
                continue;
            }
            if (first == 0)
                first = t;
            conns[i].have += (int)got;
            uint32_t doc = i % (uint32_t)opt.docs;
            while (conns[i].have >= opt.edit_size) {
                conns[i].have -= opt.edit_size;
                edits++;
                if (write_all(conns[i].fd, ack, (size_t)opt.ack_size) != 0)
                    errors++;
                for (uint32_t to = doc; to < (uint32_t)n; to += (uint32_t)opt.docs)
                    if (to != i && write_all(conns[to].fd, edit, (size_t)opt.edit_size) != 0)
                        errors++;
            }
        }
    }
    editors_report_t rep;
    if (read(pipefd[0], &rep, sizeof rep) != (ssize_t)sizeof rep)
        die("editors' report");
    waitpid(child, NULL, 0);
    /* What the editors should have received: per edit, an ACK and one copy
     * for each other editor of its document. Editors send round-robin, so
     * editor i sent edits_sent / n edits, plus one if i < edits_sent % n. */
    uint64_t expected_bytes = 0;
    for (int i = 0; i < n; i++) {
        uint64_t sent = rep.edits_sent / (uint64_t)n + ((uint64_t)i < rep.edits_sent % (uint64_t)n);
        uint64_t members = (uint64_t)((n - i % opt.docs + opt.docs - 1) / opt.docs);
        expected_bytes += sent * ((uint64_t)opt.ack_size + (members - 1) * (uint64_t)opt.edit_size);
    }
    printf("{\"connections\":%d,\"docs\":%d,\"rate\":%g,\"duration_s\":%g,\"edit_size\":%d,"
           "\"ack_size\":%d,\"offered_edits_per_s\":%.0f,\"window_edits\":%llu,\"edits_per_s\":%."
           "0f,\"server_cpu_s\":%.3f,"
           "\"server_sys_s\":%.3f,\"server_cpu_us_per_edit\":%.2f,\"writes_per_edit\":%.2f,"
           "\"editors_cpu_s\":%.3f,\"edits_sent\":%llu,\"bytes_received\":%llu,"
           "\"bytes_expected\":%llu,\"errors\":%d}\n",
           opt.connections, opt.docs, opt.rate, opt.duration, opt.edit_size, opt.ack_size,
           opt.rate * opt.connections, (unsigned long long)window_edits,
           window_s > 0 ? (double)window_edits / window_s : 0.0, cpu_window, sys_window,
           window_edits ? cpu_window * 1e6 / (double)window_edits : 0.0, (double)n / opt.docs,
           rep.cpu_s, (unsigned long long)rep.edits_sent, (unsigned long long)rep.bytes_received,
           (unsigned long long)expected_bytes, errors + rep.errors);
    return errors + rep.errors == 0 && rep.bytes_received == expected_bytes ? 0 : 1;
}
