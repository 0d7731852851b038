/* SPDX-License-Identifier: MIT */
/*
 * main.c: the weftd executable. Parses the command line (config.c), installs
 * the signal handlers (SIGINT/SIGTERM stop the server cleanly, SIGPIPE is
 * ignored), starts the server and prints the address it listens on (https://
 * with TLS). Exit codes: 0 after a clean stop, 2 for a bad command line, 1
 * when the server cannot start (TLS files, store, address) or fails.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "srv.h"

static srv_t *running;

/* H2O 2.2.5's h2o_context_dispose() leaves the context's message queue (88
 * bytes, once per process) allocated, and freeing it by hand crashes: tell
 * LeakSanitizer, in sanitizer builds, that this one is known. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_multithread_create_queue\n";
}

static void on_signal(int sig)
{
    (void)sig;
    if (running != NULL)
        srv_request_stop(running);
}

int main(int argc, char **argv)
{
    srv_config_t cfg;
    srv_t *srv;
    char err[256] = "";
    struct sigaction sa;
    int r;

    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return srv_token_main(argc - 1, argv + 1, stdout, stderr); /* issue a token, exit */
    srv_config_init(&cfg);
    r = srv_config_parse(&cfg, argc, argv, err, sizeof(err));
    if (r == 1) {
        srv_config_usage(stdout);
        return 0;
    }
    if (r != 0) {
        fprintf(stderr, "weftd: %s\n", err);
        return 2;
    }
    if (cfg.token_secret_len == 0)
        fputs("weftd: no token secret: anyone may read and edit every document\n", stderr);
    signal(SIGPIPE, SIG_IGN);
    if (srv_new(&cfg, &srv) != 0)
        return 1;

    running = srv;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    printf("weftd: listening on %s://%s:%u\n", cfg.tls_cert != NULL ? "https" : "http",
           cfg.listen_host, (unsigned)srv_port(srv));
    fflush(stdout);
    r = srv_run(srv);
    running = NULL;
    srv_free(srv);
    if (r == 0)
        fprintf(stderr, "weftd: stopped\n");
    return r == 0 ? 0 : 1;
}
