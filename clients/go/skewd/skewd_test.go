package skewd

// The tests that need a live agent read its segment at $SKEWD_SHM and skip
// without it (tests/go.rs starts an agent on honest fake NTP servers, waits
// for it to synchronize and runs `go test` with SKEWD_SHM set). Every
// interval is checked against the host's CLOCK_REALTIME (time.Now) read
// just before and just after the call: the host clock follows the same
// servers, so true time, as the host knows it, must be inside.

import (
	"errors"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func hostNs() int64 { return time.Now().UnixNano() }

// live opens the agent's segment, or skips the test without one.
func live(t testing.TB, fast bool) *Clock {
	t.Helper()
	path := os.Getenv("SKEWD_SHM")
	if path == "" {
		t.Skip("SKEWD_SHM is not set: no live agent")
	}
	c, err := Open(path, fast)
	if err != nil {
		t.Fatalf("Open(%q, fast=%v): %v", path, fast, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// contains: the interval read between the host clock reads before and
// after holds some instant of that span.
func contains(iv Interval, before, after int64) bool {
	return iv.EarliestNs <= after && iv.LatestNs >= before && iv.EarliestNs <= iv.LatestNs
}

func TestErrorCodes(t *testing.T) {
	for i, e := range byCode {
		if i == 0 {
			continue
		}
		if e.Code != -i {
			t.Errorf("byCode[%d] has code %d", i, e.Code)
		}
		if e.Msg == "" || strings.Contains(e.Msg, "unknown skewd error code") {
			t.Errorf("code %d: message %q", e.Code, e.Msg)
		}
		if got := codeError(-i); got != error(e) || !errors.Is(got, e) {
			t.Errorf("codeError(%d) = %v", -i, got)
		}
		for j, other := range byCode[1:] {
			if j+1 != i && errors.Is(e, other) {
				t.Errorf("%v matches %v", e, other)
			}
		}
	}
	if len(byCode) != 16 {
		t.Errorf("%d codes", len(byCode)-1)
	}
	unknown := codeError(-99)
	var se *Error
	if !errors.As(unknown, &se) || se.Code != -99 || se.Msg != "unknown skewd error code" {
		t.Errorf("code -99: %#v", unknown)
	}
	if s := ErrTimeout.Error(); s != "skewd: timed out" {
		t.Errorf("ErrTimeout.Error() = %q", s)
	}
}

func TestStatusAndEpsilon(t *testing.T) {
	names := map[Status]string{
		StatusUnknown:      "unknown",
		StatusSynchronized: "synchronized",
		StatusFreeRunning:  "free_running",
		StatusDisrupted:    "disrupted",
		Status(9):          "status(9)",
	}
	for s, want := range names {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int32(s), s.String(), want)
		}
	}
	for _, c := range []struct {
		iv   Interval
		want time.Duration
	}{
		{Interval{EarliestNs: 10, LatestNs: 10}, 0},
		{Interval{EarliestNs: 10, LatestNs: 13}, 2},
		{Interval{EarliestNs: -4, LatestNs: 4}, 4},
		{Interval{EarliestNs: math.MinInt64, LatestNs: math.MaxInt64}, math.MaxInt64},
		{Interval{EarliestNs: 5, LatestNs: 1}, 0},
	} {
		if got := c.iv.Epsilon(); got != c.want {
			t.Errorf("%+v: epsilon %d, want %d", c.iv, got, c.want)
		}
	}
	if !(Interval{Status: StatusFreeRunning}).Usable() || (Interval{Status: StatusDisrupted}).Usable() {
		t.Error("Usable")
	}
}

func TestOpenRefusals(t *testing.T) {
	for _, fast := range []bool{false, true} {
		c, err := Open("/nonexistent", fast)
		var se *Error
		if c != nil || !errors.Is(err, ErrOpen) || !errors.As(err, &se) || se.Code != -3 {
			t.Errorf("Open(/nonexistent, fast=%v) = %v, %v; want code -3 (ErrOpen)", fast, c, err)
		}
		if c, err := Open("/tmp/a\x00b", fast); c != nil || !errors.Is(err, ErrInval) {
			t.Errorf("a path with a NUL: %v, %v", c, err)
		}
	}
}

// Open("") finds the segment where the agent puts it: /run/skewd/clock,
// else $XDG_RUNTIME_DIR/skewd/clock (a copy of the live segment here).
func TestOpenTheDefaultPath(t *testing.T) {
	if _, err := os.Stat("/run/skewd/clock"); err == nil {
		t.Skip("an agent publishes at /run/skewd/clock: the default is taken")
	}
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if c, err := Open("", false); c != nil || !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(\"\") with no segment: %v, %v; want ErrNotFound", c, err)
	}
	seg := os.Getenv("SKEWD_SHM")
	if seg == "" {
		return
	}
	if err := os.Mkdir(dir+"/skewd", 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 10; i++ {
		var b []byte
		if b, err = os.ReadFile(seg); err != nil {
			t.Fatal(err)
		}
		if err = os.WriteFile(dir+"/skewd/clock", b, 0o644); err != nil {
			t.Fatal(err)
		}
		var c *Clock
		if c, err = Open("", true); err == nil {
			_, err = c.Now()
			c.Close()
		}
		if !errors.Is(err, ErrMidWrite) {
			break
		}
	}
	if err != nil {
		t.Fatalf("Open(\"\") and Now on a copy at $XDG_RUNTIME_DIR/skewd/clock: %v", err)
	}
}

// Close while goroutines read and one waits: no crash (the handle is freed
// by the finalizer, once no call can use it), and later calls fail.
func TestCloseRacingCalls(t *testing.T) {
	seg := os.Getenv("SKEWD_SHM")
	if seg == "" {
		t.Skip("SKEWD_SHM not set")
	}
	c, err := Open(seg, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func() {
			for {
				select {
				case <-done:
					return
				default:
					_, _ = c.Now()
				}
			}
		}()
	}
	waited := make(chan error, 1)
	go func() {
		waited <- c.WaitUntil(time.Now().UnixNano()+int64(time.Hour), 300*time.Millisecond, NoMaxEpsilon)
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err == nil {
		t.Error("a wait an hour ahead returned")
	}
	close(done)
	if _, err := c.Now(); !errors.Is(err, ErrInval) {
		t.Errorf("Now after Close: %v", err)
	}
	runtime.GC()
}

func TestNilAndZeroClock(t *testing.T) {
	var nilClock *Clock
	for _, c := range []*Clock{nilClock, {}} {
		if _, err := c.Now(); !errors.Is(err, ErrInval) {
			t.Errorf("Now on %#v: %v", c, err)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
}

// Which libskewd_c this binary runs: the mapped libskewd_c.so (an rpath
// loses to LD_LIBRARY_PATH, so a test harness's can swap it), or none when
// linked statically.
func TestLinkedLibrary(t *testing.T) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		if f := strings.Fields(l); len(f) >= 6 && strings.HasSuffix(f[len(f)-1], "/libskewd_c.so") {
			t.Logf("libskewd_c: %s", f[len(f)-1])
			return
		}
	}
	t.Logf("libskewd_c: linked statically")
}

func TestNowContainsTheHostClock(t *testing.T) {
	for _, fast := range []bool{false, true} {
		c := live(t, fast)
		for i := 0; i < 1000; i++ {
			before := hostNs()
			iv, err := c.Now()
			after := hostNs()
			if err != nil {
				t.Fatalf("fast=%v: Now: %v", fast, err)
			}
			if iv.Status != StatusSynchronized {
				t.Fatalf("fast=%v: status %v", fast, iv.Status)
			}
			if !contains(iv, before, after) {
				t.Fatalf("fast=%v: host clock %d..%d outside [%d, %d]",
					fast, before, after, iv.EarliestNs, iv.LatestNs)
			}
		}
		iv, _ := c.Now()
		lf, err := c.NowLeapFree()
		if err != nil || lf.Status != StatusSynchronized || lf.EarliestNs < iv.EarliestNs {
			t.Fatalf("fast=%v: NowLeapFree %+v, %v after Now %+v", fast, lf, err, iv)
		}
		t.Logf("fast=%v: 1000 reads contain the host clock; last ε %v", fast, iv.Epsilon())
	}
}

func TestAfterBefore(t *testing.T) {
	c := live(t, false)
	now := hostNs()
	const s = int64(10 * time.Second)
	for _, q := range []struct {
		name string
		f    func(int64) (bool, error)
		t    int64
		want bool
	}{
		{"After(now-10s)", c.After, now - s, true},
		{"Before(now+10s)", c.Before, now + s, true},
		{"After(now+10s)", c.After, now + s, false},
		{"Before(now-10s)", c.Before, now - s, false},
		{"AfterLeapFree(now-10s)", c.AfterLeapFree, now - s, true},
		{"BeforeLeapFree(now+60s)", c.BeforeLeapFree, now + 6*s, true},
	} {
		if got, err := q.f(q.t); err != nil || got != q.want {
			t.Errorf("%s = %v, %v; want %v", q.name, got, err, q.want)
		}
	}
}

func TestWaitUntil(t *testing.T) {
	c := live(t, false)
	target := hostNs() + int64(2*time.Millisecond)
	start := time.Now()
	if err := c.WaitUntil(target, 5*time.Second, NoMaxEpsilon); err != nil {
		t.Fatalf("WaitUntil(now+2ms): %v", err)
	}
	took := time.Since(start)
	iv, err := c.Now()
	if err != nil || iv.EarliestNs <= target {
		t.Fatalf("after WaitUntil(%d): %+v, %v", target, iv, err)
	}
	if hostNs() <= target {
		t.Fatalf("WaitUntil returned before the host clock reached the target")
	}
	t.Logf("WaitUntil(now+2ms) took %v (ε %v)", took, iv.Epsilon())
	// A past instant returns at once, on either timescale.
	lf, _ := c.NowLeapFree()
	if err := c.WaitUntilLeapFree(lf.EarliestNs-1, 0, NoMaxEpsilon); err != nil {
		t.Errorf("WaitUntilLeapFree(a past instant, no time): %v", err)
	}
}

func TestCommitWait(t *testing.T) {
	c := live(t, false)
	for i := 0; i < 20; i++ {
		w, err := c.CommitWait(5*time.Second, NoMaxEpsilon)
		if err != nil {
			t.Fatalf("CommitWait: %v", err)
		}
		iv, err := c.NowLeapFree()
		if err != nil || iv.EarliestNs <= w.TimestampLeapFreeNs {
			t.Fatalf("after CommitWait %+v: %+v, %v", w, iv, err)
		}
		if w.Waited < 0 || w.Epsilon < 0 {
			t.Fatalf("CommitWait: %+v", w)
		}
		if i == 0 {
			t.Logf("CommitWait: waited %v at ε %v", w.Waited, w.Epsilon)
		}
	}
}

func TestWaitsThatCannotFinish(t *testing.T) {
	c := live(t, false)
	if err := c.WaitUntil(hostNs()+int64(time.Hour), 20*time.Millisecond, NoMaxEpsilon); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitUntil(now+1h, 20ms): %v", err)
	}
	if _, err := c.CommitWait(20*time.Millisecond, 0); !errors.Is(err, ErrTimeout) {
		t.Errorf("CommitWait(20ms, ε <= 0): %v", err)
	}
	if err := c.WaitUntil(0, -time.Second, NoMaxEpsilon); !errors.Is(err, ErrInval) {
		t.Errorf("a negative timeout: %v", err)
	}
}

// Goroutines sharing one Clock: every read contains the host clock.
func TestConcurrentReads(t *testing.T) {
	const goroutines, each = 8, 20000
	for _, fast := range []bool{false, true} {
		c := live(t, fast)
		var wg sync.WaitGroup
		var mu sync.Mutex
		reads, misses, failures := 0, 0, 0
		var firstMiss string
		start := time.Now()
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, m, f := 0, 0, 0
				var miss string
				for i := 0; i < each; i++ {
					before := hostNs()
					iv, err := c.Now()
					after := hostNs()
					r++
					switch {
					case err != nil:
						f++
						miss = err.Error()
					case !contains(iv, before, after) || iv.Status != StatusSynchronized:
						m++
						miss = "host clock outside the interval"
					}
				}
				mu.Lock()
				reads, misses, failures = reads+r, misses+m, failures+f
				if firstMiss == "" {
					firstMiss = miss
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("fast=%v: %d goroutines, %d reads, %d misses, %d errors, in %v",
			fast, goroutines, reads, misses, failures, took.Round(time.Millisecond))
		if reads != goroutines*each || misses != 0 || failures != 0 {
			t.Fatalf("fast=%v: %d reads, %d misses, %d errors (%s)", fast, reads, misses, failures, firstMiss)
		}
	}
}

func TestNowAllocatesNothing(t *testing.T) {
	c := live(t, true)
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Now() }); n != 0 {
		t.Errorf("Now allocates %.1f times per call", n)
	}
}

func TestClosedClock(t *testing.T) {
	c := live(t, false)
	if _, err := c.Now(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := c.Now(); !errors.Is(err, ErrInval) {
		t.Errorf("Now on a closed Clock: %v", err)
	}
	if _, err := c.NowLeapFree(); !errors.Is(err, ErrInval) {
		t.Errorf("NowLeapFree on a closed Clock: %v", err)
	}
	if _, err := c.After(0); !errors.Is(err, ErrInval) {
		t.Errorf("After on a closed Clock: %v", err)
	}
	if err := c.WaitUntil(0, time.Second, NoMaxEpsilon); !errors.Is(err, ErrInval) {
		t.Errorf("WaitUntil on a closed Clock: %v", err)
	}
	if _, err := c.CommitWait(time.Second, NoMaxEpsilon); !errors.Is(err, ErrInval) {
		t.Errorf("CommitWait on a closed Clock: %v", err)
	}
}

func BenchmarkNow(b *testing.B) {
	for _, fast := range []bool{false, true} {
		name := "strict"
		if fast {
			name = "fast"
		}
		b.Run(name, func(b *testing.B) {
			c := live(b, fast)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.Now(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
