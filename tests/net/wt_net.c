/* SPDX-License-Identifier: MIT */
/*
 * wt_net.c: error strings, clocks and TCP with timeouts for tests/net (see
 * wt_net.h). Connects are non-blocking with poll(); SIGPIPE is avoided with
 * MSG_NOSIGNAL on every send.
 */
#define _GNU_SOURCE
#include "wt_net.h"

#include "crdt.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *wt_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define WT__ERRNO_CASE(name, value, text)                                                          \
    case value:                                                                                    \
        return text;
        WT_ERRNO_MAP(WT__ERRNO_CASE)
#undef WT__ERRNO_CASE
    default:
        break;
    }
    if (err < 0 && err > -100)
        return crdt_strerror(err);
    if (err <= -100 && err > -200)
        return proto_strerror(err);
    return "unknown error";
}

int64_t wt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wt_now_ms(void)
{
    return wt_now_us() / 1000;
}

int wt_ms_left(int64_t deadline_ms)
{
    int64_t left = deadline_ms - wt_now_ms();
    if (left < 0)
        return 0;
    if (left > 0x7fffffff)
        return 0x7fffffff;
    return (int)left;
}

/* Waits for `events` on fd; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        return n > 0;
    }
}

int wt_tcp_connect(const char *host, uint16_t port, int timeout_ms)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL)
        return WT_ECONNECT;
    int64_t deadline = wt_now_ms() + timeout_ms;
    int ret = WT_ECONNECT;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            ret = fd;
            break;
        }
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, wt_ms_left(deadline));
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                ret = fd;
                break;
            }
            if (w == 0)
                ret = WT_ETIMEOUT;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return ret;
}

int wt_write_all(int fd, const void *data, size_t len, int timeout_ms)
{
    const uint8_t *p = data;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : wt_now_ms() + timeout_ms;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int left = timeout_ms < 0 ? -1 : wt_ms_left(deadline);
            int w = wait_fd(fd, POLLOUT, left);
            if (w < 0)
                return WT_EIO;
            if (w == 0)
                return WT_ETIMEOUT;
            continue;
        }
        return WT_EIO;
    }
    return 0;
}

ssize_t wt_read_some(int fd, void *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = wt_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return WT_EIO;
        int left = wt_ms_left(deadline);
        if (left == 0)
            return WT_ETIMEOUT;
        int w = wait_fd(fd, POLLIN, left);
        if (w < 0)
            return WT_EIO;
        if (w == 0)
            return WT_ETIMEOUT;
    }
}
