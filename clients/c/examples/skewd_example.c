/*
 * skewd_example: the C ABI in use, and a probe for its return codes.
 *
 *   skewd_example now [PATH]      strict and fast reads, after/before,
 *                                 wait_until, commit_wait, and 4 threads
 *                                 sharing one handle; checks every interval
 *                                 against CLOCK_REALTIME read around it
 *                                 (exit 0 when all hold; prints JSON)
 *   skewd_example call PATH OP    one call on a segment (PATH "-": the
 *                                 default), prints its return code and
 *                                 skewd_strerror; OP is one of open, now,
 *                                 now-fast, after, wait, commit, badscale
 *
 * Build: cc -O2 -I include clients/c/examples/skewd_example.c \
 *            target/release/libskewd_c.a -lpthread -ldl -lm -lrt -lutil -o skewd_example
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "skewd.h"

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The interval read between two host clock reads must contain the host
 * clock at some instant in between: earliest <= after and latest >= before
 * (the host clock here is synchronized to the same servers). */
static int contains(const skewd_interval *t, int64_t before, int64_t after) {
    return t->earliest_ns <= after && t->latest_ns >= before && t->earliest_ns <= t->latest_ns;
}

struct worker {
    const skewd_clock *c;
    long reads, bad;
};

static void *work(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < 200000; i++) {
        skewd_interval t;
        int64_t before = realtime_ns();
        int rc = skewd_now(w->c, &t);
        int64_t after = realtime_ns();
        w->reads++;
        if (rc != SKEWD_OK || !contains(&t, before, after)) w->bad++;
    }
    return NULL;
}

static int now_mode(const char *path) {
    skewd_clock *c, *f;
    int rc = skewd_open(path, 0, &c);
    if (rc != SKEWD_OK) {
        fprintf(stderr, "skewd_open: %s (%d)\n", skewd_strerror(rc), rc);
        return 1;
    }
    rc = skewd_open(path, SKEWD_FAST, &f);
    if (rc != SKEWD_OK) {
        fprintf(stderr, "skewd_open fast: %s (%d)\n", skewd_strerror(rc), rc);
        return 1;
    }
    int failures = 0;
    skewd_interval t, tf, lf;
    int64_t b = realtime_ns();
    int r1 = skewd_now(c, &t);
    int r2 = skewd_now(f, &tf);
    int r3 = skewd_now_on(c, SKEWD_LEAPFREE, &lf);
    int64_t a = realtime_ns();
    if (r1 || r2 || r3) {
        fprintf(stderr, "skewd_now: %s / %s / %s\n", skewd_strerror(r1), skewd_strerror(r2), skewd_strerror(r3));
        return 1;
    }
    if (!contains(&t, b, a) || !contains(&tf, b, a)) failures++;
    /* Before any leap second after 2017 the two timescales agree. */
    if (lf.status != t.status) failures++;

    /* An instant 10 s ago is surely past; one 10 s ahead surely not. */
    int past = skewd_after(c, a - 10000000000LL, SKEWD_UTC);
    int ahead = skewd_before(c, a + 10000000000LL, SKEWD_UTC);
    if (past != 1 || ahead != 1) failures++;

    /* Wait until 2 ms from now is surely past. */
    int64_t target = realtime_ns() + 2000000;
    int w = skewd_wait_until(c, target, SKEWD_UTC, 5000000000LL, -1);
    skewd_interval after_wait;
    if (w != SKEWD_OK || skewd_now(c, &after_wait) != SKEWD_OK || after_wait.earliest_ns <= target) failures++;

    skewd_commit cw;
    int cr = skewd_commit_wait(c, 5000000000LL, -1, &cw);
    skewd_interval lf2;
    if (cr != SKEWD_OK || skewd_now_on(c, SKEWD_LEAPFREE, &lf2) != SKEWD_OK ||
        lf2.earliest_ns <= cw.timestamp_leapfree_ns)
        failures++;

    /* Four threads on one handle. */
    pthread_t th[4];
    struct worker ws[4];
    for (int i = 0; i < 4; i++) {
        ws[i] = (struct worker){.c = c};
        pthread_create(&th[i], NULL, work, &ws[i]);
    }
    long reads = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        reads += ws[i].reads;
        bad += ws[i].bad;
    }
    if (bad) failures++;

    printf("{\"earliest_ns\":%lld,\"latest_ns\":%lld,\"status\":%d,\"fast_earliest_ns\":%lld,"
           "\"fast_latest_ns\":%lld,\"host_before_ns\":%lld,\"host_after_ns\":%lld,"
           "\"after_past\":%d,\"before_ahead\":%d,\"wait_rc\":%d,\"commit_rc\":%d,"
           "\"commit_timestamp_leapfree_ns\":%lld,\"commit_waited_ns\":%lld,"
           "\"thread_reads\":%ld,\"thread_misses\":%ld,\"failures\":%d}\n",
           (long long)t.earliest_ns, (long long)t.latest_ns, t.status, (long long)tf.earliest_ns,
           (long long)tf.latest_ns, (long long)b, (long long)a, past, ahead, w, cr,
           (long long)cw.timestamp_leapfree_ns, (long long)cw.waited_ns, reads, bad, failures);
    skewd_close(f);
    skewd_close(c);
    return failures ? 1 : 0;
}

static int call_mode(const char *path, const char *op) {
    skewd_clock *c = NULL;
    int flags = strcmp(op, "now-fast") == 0 ? SKEWD_FAST : 0;
    int rc = skewd_open(strcmp(path, "-") == 0 ? NULL : path, flags, &c);
    if (rc == SKEWD_OK && strcmp(op, "open") != 0) {
        skewd_interval t;
        skewd_commit cw;
        if (strcmp(op, "now") == 0 || strcmp(op, "now-fast") == 0) {
            rc = skewd_now(c, &t);
        } else if (strcmp(op, "after") == 0) {
            rc = skewd_after(c, 0, SKEWD_UTC);
        } else if (strcmp(op, "wait") == 0) {
            rc = skewd_wait_until(c, INT64_MAX - 1, SKEWD_UTC, 20000000, -1);
        } else if (strcmp(op, "commit") == 0) {
            rc = skewd_commit_wait(c, 20000000, 0, &cw);
        } else if (strcmp(op, "badscale") == 0) {
            rc = skewd_now_on(c, 7, &t);
        } else {
            fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
    }
    printf("%d %s\n", rc, skewd_strerror(rc));
    skewd_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "now") == 0) return now_mode(argc >= 3 ? argv[2] : NULL);
    if (argc == 4 && strcmp(argv[1], "call") == 0) return call_mode(argv[2], argv[3]);
    fprintf(stderr, "usage: %s now [PATH] | call PATH OP\n", argv[0]);
    return 2;
}
