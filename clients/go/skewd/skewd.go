// Package skewd reads, from skewd's shared memory, an interval
// [EarliestNs, LatestNs] that contains true time (ns since the Unix epoch),
// through skewd's C ABI (include/skewd.h, libskewd_c).
//
//	c, err := skewd.Open("", false) // the default path, strict reads
//	if err != nil { ... }
//	defer c.Close()
//	t, err := c.Now() // t.EarliestNs <= true time (UTC) <= t.LatestNs
//
// A *Clock may be shared between goroutines, as the C handle it wraps may
// be between threads: every method but Close is safe to call
// concurrently, lock-free, with no allocation on the read path. Close, as
// skewd_close, must not run while another goroutine is inside a call on
// the same Clock; after Close every call returns an error matching
// ErrInval (and a second Close does nothing).
//
// Which library is linked is chosen by build tag (see link_*.go and
// clients/go/README.md): by default this source tree's
// target/release/libskewd_c.so with an rpath; -tags skewd_static links
// target/release/libskewd_c.a into the binary; -tags skewd_pkgconfig uses
// the installed library (pkg-config skewd).
package skewd

/*
#include <stdint.h>
#include <stdlib.h>
#include <skewd.h>

// The handle crosses as an integer and results come back by value: a cgo
// call with a pointer argument costs a heap allocation, these cost none.
typedef struct { int rc; uintptr_t c; } skewd_go_opened;
typedef struct { int rc; skewd_interval t; } skewd_go_interval;
typedef struct { int rc; skewd_commit w; } skewd_go_commit;

static skewd_go_opened skewd_go_open(const char *path, int flags) {
	skewd_clock *c = NULL;
	skewd_go_opened r = {0, 0};
	r.rc = skewd_open(path, flags, &c);
	r.c = (uintptr_t)c;
	return r;
}

static void skewd_go_close(uintptr_t c) { skewd_close((skewd_clock *)c); }

static skewd_go_interval skewd_go_now_on(uintptr_t c, int timescale) {
	skewd_go_interval r = {0, {0, 0, 0}};
	r.rc = skewd_now_on((const skewd_clock *)c, timescale, &r.t);
	return r;
}

static int skewd_go_compare(uintptr_t c, int64_t t_ns, int timescale, int after) {
	return after ? skewd_after((const skewd_clock *)c, t_ns, timescale)
	             : skewd_before((const skewd_clock *)c, t_ns, timescale);
}

static int skewd_go_wait_until(uintptr_t c, int64_t t_ns, int timescale, int64_t timeout_ns, int64_t max_epsilon_ns) {
	return skewd_wait_until((const skewd_clock *)c, t_ns, timescale, timeout_ns, max_epsilon_ns);
}

static skewd_go_commit skewd_go_commit_wait(uintptr_t c, int64_t timeout_ns, int64_t max_epsilon_ns) {
	skewd_go_commit r = {0, {0, 0, 0}};
	r.rc = skewd_commit_wait((const skewd_clock *)c, timeout_ns, max_epsilon_ns, &r.w);
	return r;
}
*/
import "C"

import (
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Status says what an interval is good for: act on StatusSynchronized and
// StatusFreeRunning (see Interval.Usable).
type Status int32

// The statuses (SKEWD_STATUS_*).
const (
	// StatusUnknown: no model, or a model past its void-after.
	StatusUnknown Status = C.SKEWD_STATUS_UNKNOWN
	// StatusSynchronized: a fault-tolerant majority of sources agreed
	// recently.
	StatusSynchronized Status = C.SKEWD_STATUS_SYNCHRONIZED
	// StatusFreeRunning: still a hard bound, widening.
	StatusFreeRunning Status = C.SKEWD_STATUS_FREE_RUNNING
	// StatusDisrupted: the model was contradicted and rebuilt.
	StatusDisrupted Status = C.SKEWD_STATUS_DISRUPTED
)

// String is the name skewd's JSON, metrics and CLI use.
func (s Status) String() string {
	switch s {
	case StatusUnknown:
		return "unknown"
	case StatusSynchronized:
		return "synchronized"
	case StatusFreeRunning:
		return "free_running"
	case StatusDisrupted:
		return "disrupted"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Interval contains true time: EarliestNs <= true time <= LatestNs, in ns
// since the Unix epoch on one timescale (UTC from Now, leap-free from
// NowLeapFree).
type Interval struct {
	EarliestNs, LatestNs int64
	Status               Status
}

// Epsilon is half the interval's width, rounded up.
func (t Interval) Epsilon() time.Duration {
	if t.LatestNs <= t.EarliestNs {
		return 0
	}
	w := uint64(t.LatestNs) - uint64(t.EarliestNs)
	e := w/2 + w%2
	if e > math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(e)
}

// Usable reports whether the interval may be acted on (synchronized or
// free-running).
func (t Interval) Usable() bool {
	return t.Status == StatusSynchronized || t.Status == StatusFreeRunning
}

// Commit is what CommitWait chose: TimestampLeapFreeNs (leap-free ns) is
// surely in the past when CommitWait returns.
type Commit struct {
	TimestampLeapFreeNs int64
	// Waited is how long the wait took.
	Waited time.Duration
	// Epsilon is the error bound when the timestamp was chosen.
	Epsilon time.Duration
}

// Error is a failure of the C ABI: Code is a negative SKEWD_E_* code, Msg
// what skewd_strerror says of it. errors.Is(err, ErrTimeout) and the like
// compare codes.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return "skewd: " + e.Msg }

// Is matches any *Error with the same Code (the sentinels below).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

func newError(code C.int) *Error {
	return &Error{Code: int(code), Msg: C.GoString(C.skewd_strerror(code))}
}

// The SKEWD_E_* codes, for errors.Is.
var (
	ErrInval                = newError(C.SKEWD_E_INVAL)
	ErrNotFound             = newError(C.SKEWD_E_NOT_FOUND)
	ErrOpen                 = newError(C.SKEWD_E_OPEN)
	ErrUntrusted            = newError(C.SKEWD_E_UNTRUSTED)
	ErrFormat               = newError(C.SKEWD_E_FORMAT)
	ErrMidWrite             = newError(C.SKEWD_E_MID_WRITE)
	ErrNoModel              = newError(C.SKEWD_E_NO_MODEL)
	ErrUnusable             = newError(C.SKEWD_E_UNUSABLE)
	ErrInterrupted          = newError(C.SKEWD_E_INTERRUPTED)
	ErrVMDisrupted          = newError(C.SKEWD_E_VM_DISRUPTED)
	ErrForeignTimeline      = newError(C.SKEWD_E_FOREIGN_TIMELINE)
	ErrForeignTimeNamespace = newError(C.SKEWD_E_FOREIGN_TIME_NAMESPACE)
	ErrUnrepresentable      = newError(C.SKEWD_E_UNREPRESENTABLE)
	ErrTimeout              = newError(C.SKEWD_E_TIMEOUT)
	ErrInternal             = newError(C.SKEWD_E_INTERNAL)
)

// NoMaxEpsilon, as WaitUntil's or CommitWait's maxEpsilon: no cap on the
// error bound.
const NoMaxEpsilon time.Duration = -1

// errClosed: a call on a closed Clock (or a nil or zero one).
var errClosed = &Error{Code: C.SKEWD_E_INVAL, Msg: "the Clock is closed"}

// byCode: the sentinels, at index -code.
var byCode = []*Error{nil, ErrInval, ErrNotFound, ErrOpen, ErrUntrusted, ErrFormat,
	ErrMidWrite, ErrNoModel, ErrUnusable, ErrInterrupted, ErrVMDisrupted,
	ErrForeignTimeline, ErrForeignTimeNamespace, ErrUnrepresentable, ErrTimeout,
	ErrInternal}

// fail is the sentinel for a negative return code (no allocation).
func fail(rc C.int) error { return codeError(int(rc)) }

func codeError(code int) error {
	if code < 0 && -code < len(byCode) {
		return byCode[-code]
	}
	return newError(C.int(code))
}

// Clock is an open segment. Its methods may be called from any number of
// goroutines at once (not concurrently with Close).
type Clock struct {
	// h is the C handle (a skewd_clock *, in C memory, never Go's), 0
	// once closed.
	h atomic.Uintptr
	// parked is the handle after Close: it is freed by the finalizer, once
	// no call can still be using it (every call ends with
	// runtime.KeepAlive(c)), so a Close racing a call in flight is an
	// error for later calls, never a crash.
	parked atomic.Uintptr
}

// Open maps the segment at path ("" : where the agent puts it, as
// skewd_open(NULL)). fast reads one clock per Now, without the check that
// catches a suspend since the agent's last update: for hosts that never
// suspend.
func Open(path string, fast bool) (*Clock, error) {
	var flags C.int
	if fast {
		flags = C.SKEWD_FAST
	}
	var r C.skewd_go_opened
	if path == "" {
		r = C.skewd_go_open(nil, flags)
	} else {
		if strings.IndexByte(path, 0) >= 0 {
			return nil, ErrInval
		}
		p := C.CString(path)
		r = C.skewd_go_open(p, flags)
		C.free(unsafe.Pointer(p))
	}
	if r.rc != C.SKEWD_OK {
		return nil, fail(r.rc)
	}
	c := &Clock{}
	c.h.Store(uintptr(r.c))
	runtime.SetFinalizer(c, (*Clock).free)
	return c, nil
}

// Close ends the use of c: every later call returns an error matching
// ErrInval. Idempotent, and safe while other goroutines still call c (they
// finish with the segment they started on); the segment is unmapped once
// c is garbage (its finalizer), when no call can be using it any more.
func (c *Clock) Close() error {
	if c == nil {
		return nil
	}
	if h := c.h.Swap(0); h != 0 {
		c.parked.Store(h)
	}
	return nil
}

// free is the finalizer: no call on c is in flight any more.
func (c *Clock) free() {
	for _, h := range []uintptr{c.h.Swap(0), c.parked.Swap(0)} {
		if h != 0 {
			C.skewd_go_close(C.uintptr_t(h))
		}
	}
}

// handle is the live C handle, or 0 once closed.
func (c *Clock) handle() C.uintptr_t {
	if c == nil {
		return 0
	}
	return C.uintptr_t(c.h.Load())
}

func (c *Clock) nowOn(scale C.int) (Interval, error) {
	h := c.handle()
	if h == 0 {
		return Interval{}, errClosed
	}
	r := C.skewd_go_now_on(h, scale)
	// The finalizer must not close h while C reads it.
	runtime.KeepAlive(c)
	if r.rc != C.SKEWD_OK {
		return Interval{}, fail(r.rc)
	}
	return Interval{
		EarliestNs: int64(r.t.earliest_ns),
		LatestNs:   int64(r.t.latest_ns),
		Status:     Status(r.t.status),
	}, nil
}

// Now is the UTC interval now (Unix ns as `date` shows them). Lock-free;
// no system call beyond the clock reads. An unknown or disrupted interval
// is returned, with its status, not refused: check Usable.
func (c *Clock) Now() (Interval, error) { return c.nowOn(C.SKEWD_UTC) }

// NowLeapFree is the interval now on the leap-free timescale (UTC plus the
// leap seconds since 2017; commit timestamps are on it).
func (c *Clock) NowLeapFree() (Interval, error) { return c.nowOn(C.SKEWD_LEAPFREE) }

func (c *Clock) compare(tNs int64, scale C.int, after bool) (bool, error) {
	h := c.handle()
	if h == 0 {
		return false, errClosed
	}
	var a C.int
	if after {
		a = 1
	}
	rc := C.skewd_go_compare(h, C.int64_t(tNs), scale, a)
	runtime.KeepAlive(c)
	if rc < 0 {
		return false, fail(rc)
	}
	return rc == 1, nil
}

// After reports whether true time is surely after tNs (UTC ns); an unknown
// or disrupted interval is ErrUnusable.
func (c *Clock) After(tNs int64) (bool, error) { return c.compare(tNs, C.SKEWD_UTC, true) }

// Before reports whether true time is surely before tNs (UTC ns).
func (c *Clock) Before(tNs int64) (bool, error) { return c.compare(tNs, C.SKEWD_UTC, false) }

// AfterLeapFree is After with tNs on the leap-free timescale.
func (c *Clock) AfterLeapFree(tNs int64) (bool, error) {
	return c.compare(tNs, C.SKEWD_LEAPFREE, true)
}

// BeforeLeapFree is Before with tNs on the leap-free timescale.
func (c *Clock) BeforeLeapFree(tNs int64) (bool, error) {
	return c.compare(tNs, C.SKEWD_LEAPFREE, false)
}

func (c *Clock) waitUntil(tNs int64, scale C.int, timeout, maxEpsilon time.Duration) error {
	h := c.handle()
	if h == 0 {
		return errClosed
	}
	if maxEpsilon < 0 {
		maxEpsilon = -1
	}
	rc := C.skewd_go_wait_until(h, C.int64_t(tNs), scale, C.int64_t(timeout), C.int64_t(maxEpsilon))
	runtime.KeepAlive(c)
	if rc != C.SKEWD_OK {
		return fail(rc)
	}
	return nil
}

// WaitUntil blocks (the goroutine and its OS thread) until tNs (UTC ns) is
// surely in the past; ErrTimeout after timeout, also while not
// synchronized or while the error bound exceeds maxEpsilon (negative, e.g.
// NoMaxEpsilon: no cap). A negative timeout is ErrInval.
func (c *Clock) WaitUntil(tNs int64, timeout, maxEpsilon time.Duration) error {
	return c.waitUntil(tNs, C.SKEWD_UTC, timeout, maxEpsilon)
}

// WaitUntilLeapFree is WaitUntil with tNs on the leap-free timescale (for
// another process's commit timestamp).
func (c *Clock) WaitUntilLeapFree(tNs int64, timeout, maxEpsilon time.Duration) error {
	return c.waitUntil(tNs, C.SKEWD_LEAPFREE, timeout, maxEpsilon)
}

// CommitWait is Spanner's commit-wait: it picks s = latest (leap-free) from
// the first usable read (error bound <= maxEpsilon unless negative) and
// returns once s is surely in the past; ErrTimeout after timeout.
func (c *Clock) CommitWait(timeout, maxEpsilon time.Duration) (Commit, error) {
	h := c.handle()
	if h == 0 {
		return Commit{}, errClosed
	}
	if maxEpsilon < 0 {
		maxEpsilon = -1
	}
	r := C.skewd_go_commit_wait(h, C.int64_t(timeout), C.int64_t(maxEpsilon))
	runtime.KeepAlive(c)
	if r.rc != C.SKEWD_OK {
		return Commit{}, fail(r.rc)
	}
	return Commit{
		TimestampLeapFreeNs: int64(r.w.timestamp_leapfree_ns),
		Waited:              time.Duration(r.w.waited_ns),
		Epsilon:             time.Duration(r.w.epsilon_ns),
	}, nil
}
