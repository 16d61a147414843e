/*
 * skewd.h: read the interval that contains true time, from skewd's shared
 * memory, in C. Link with -lskewd_c (pkg-config --cflags --libs skewd).
 *
 *   skewd_clock *c;
 *   if (skewd_open(NULL, 0, &c) == 0) {
 *       skewd_interval t;
 *       if (skewd_now(c, &t) == 0 && t.status == SKEWD_STATUS_SYNCHRONIZED)
 *           ;  // t.earliest_ns <= true time (UTC, Unix ns) <= t.latest_ns
 *       skewd_close(c);
 *   }
 *
 * Every function but skewd_close and skewd_strerror returns 0 (or, for
 * skewd_after/skewd_before, 1 or 0) on success and a negative SKEWD_E_*
 * code on failure; skewd_strerror names the codes. A failed skewd_open
 * leaves *out untouched. A handle may be shared between threads: every function but
 * skewd_close takes it by const pointer. The segment's format:
 * docs/segment.md. Kept in sync with clients/c/src/lib.rs by a test.
 */
#ifndef SKEWD_H
#define SKEWD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define SKEWD_OK (0)
#define SKEWD_E_INVAL (-1)                   /* NULL pointer, unknown flag or timescale, negative timeout */
#define SKEWD_E_NOT_FOUND (-2)               /* no segment where the agent puts it */
#define SKEWD_E_OPEN (-3)                    /* cannot open or map the segment */
#define SKEWD_E_UNTRUSTED (-4)               /* another user could have written it */
#define SKEWD_E_FORMAT (-5)                  /* truncated, bad magic, other layout version */
#define SKEWD_E_MID_WRITE (-6)               /* the agent stayed mid-update */
#define SKEWD_E_NO_MODEL (-7)                /* no interval yet */
#define SKEWD_E_UNUSABLE (-8)                /* unknown or disrupted: not to act on */
#define SKEWD_E_INTERRUPTED (-9)             /* suspended since the last update: retry */
#define SKEWD_E_VM_DISRUPTED (-10)           /* VM migrated or restored: retry */
#define SKEWD_E_FOREIGN_TIMELINE (-11)       /* this process's clock is not the agent's */
#define SKEWD_E_FOREIGN_TIME_NAMESPACE (-12) /* another time namespace: use HTTP */
#define SKEWD_E_UNREPRESENTABLE (-13)        /* beyond 64-bit Unix ns */
#define SKEWD_E_TIMEOUT (-14)                /* a wait passed its deadline */
#define SKEWD_E_INTERNAL (-15)               /* a bug in skewd */

/* skewd_open flags: 0 is strict (a suspend since the agent's last update is
 * caught on the read); SKEWD_FAST reads one clock, for hosts that never
 * suspend. */
#define SKEWD_FAST (1)

/* Timescales: UTC (Unix time as `date` shows it), or leap-free (UTC plus
 * the leap seconds since 2017: it never repeats a second; commit-wait
 * timestamps are on it). */
#define SKEWD_UTC (0)
#define SKEWD_LEAPFREE (1)

/* What an interval is good for. Act on SYNCHRONIZED and FREE_RUNNING. */
#define SKEWD_STATUS_UNKNOWN (0)
#define SKEWD_STATUS_SYNCHRONIZED (1)
#define SKEWD_STATUS_FREE_RUNNING (2)
#define SKEWD_STATUS_DISRUPTED (3)

/* An open segment. */
typedef struct SkewdClock skewd_clock;

/* An interval that contains true time (ns since the Unix epoch). */
typedef struct skewd_interval {
    int64_t earliest_ns;
    int64_t latest_ns;
    int32_t status;
} skewd_interval;

/* What a commit-wait chose. */
typedef struct skewd_commit {
    int64_t timestamp_leapfree_ns;
    int64_t waited_ns;
    int64_t epsilon_ns;
} skewd_commit;

/* Open the segment at path (NULL: where the agent puts it). */
int skewd_open(const char *path, int flags, skewd_clock **out);

/* Close a handle (NULL is ignored). No other thread may use it after. */
void skewd_close(skewd_clock *c);

/* The interval now on a timescale (SKEWD_UTC or SKEWD_LEAPFREE). */
int skewd_now_on(const skewd_clock *c, int timescale, skewd_interval *out);

/* The UTC interval now. Lock-free; no system call beyond the clock reads. */
int skewd_now(const skewd_clock *c, skewd_interval *out);

/* 1 if true time is surely after (before) t_ns on timescale, else 0. */
int skewd_after(const skewd_clock *c, int64_t t_ns, int timescale);
int skewd_before(const skewd_clock *c, int64_t t_ns, int timescale);

/* Block until t_ns is surely in the past; SKEWD_E_TIMEOUT after timeout_ns
 * (also while not synchronized, or while the error bound exceeds
 * max_epsilon_ns; a negative max_epsilon_ns: no cap). */
int skewd_wait_until(const skewd_clock *c, int64_t t_ns, int timescale, int64_t timeout_ns, int64_t max_epsilon_ns);

/* Spanner's commit-wait: pick s = latest (leap-free), return once s is
 * surely in the past. */
int skewd_commit_wait(const skewd_clock *c, int64_t timeout_ns, int64_t max_epsilon_ns, skewd_commit *out);

/* What a return code means: a static string, never NULL. */
const char *skewd_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* SKEWD_H */
