#!/usr/bin/env python3
"""A reader of skewd's shared-memory segment (layout version 3).

Written from docs/segment.md alone (stdlib only, Python >= 3.9). It maps the
segment the agent publishes and computes, at the reader's own
CLOCK_MONOTONIC_RAW instant, the interval [earliest, latest] that contains
true time, bit for bit as the Rust client does.

    import skewd
    clock = skewd.Clock()              # /run/skewd/clock or the fallbacks
    t = clock.now()                    # t.earliest_ns <= true UTC <= t.latest_ns
    if clock.after(lease_end_ns): ...

CLI:
    python3 skewd.py now [--json] [--fast] [--shm PATH]
    python3 skewd.py at RAW_NS [--json] [--shm PATH]
"""

import argparse
import json
import mmap
import os
import stat
import struct
import sys
import time

__all__ = [
    "Clock", "Reading", "SkewdError", "NotFound", "Untrusted", "Truncated",
    "BadMagic", "WrongVersion", "MidWrite", "ForeignTimeNamespace",
    "VmDisrupted", "Interrupted", "ForeignTimeline", "NoModel",
    "Unrepresentable", "default_paths",
]

SIZE = 320
MAGIC = b"SKEWDCLK"
VERSION = 3
ONE = 10 ** 12
NS_PER_S = 10 ** 9
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
I128_MIN = -(1 << 127)
I128_MAX = (1 << 127) - 1
MAX_TRIES = 10_000
STRICT_TRIES = 4
MAX_DRIFT_NS = 1_000_000

F_MODEL = 1 << 0
F_EVIDENCE = 1 << 1
F_LEAP = 1 << 2
F_FAST = 1 << 3
F_VMCLOCK = 1 << 4
F_VMCLOCK_DEV = 1 << 5
F_LEAP_PENDING = 1 << 6

STATUSES = {0: "unknown", 1: "synchronized", 2: "free_running", 3: "disrupted"}

# (name, struct format, offset), native byte order, standard sizes.
_FIELDS = [
    ("magic", "8s", 0),
    ("version", "I", 8),
    ("size", "I", 12),
    ("generation", "Q", 16),
    ("epoch", "Q", 24),
    ("flags", "I", 32),
    ("status", "I", 36),
    ("anchor_ns", "q", 40),
    ("bound_lo_ns", "q", 48),
    ("bound_hi_ns", "q", 56),
    ("rate_ppt", "q", 64),
    ("phi_ppt", "q", 72),
    ("evidence_from_ns", "q", 80),
    ("evidence_to_ns", "q", 88),
    ("wander_ppt_per_s", "q", 96),
    ("phi_hw_ppt", "q", 104),
    ("sync_until_ns", "q", 112),
    ("void_after_ns", "q", 120),
    ("utc_offset_ns", "q", 128),
    ("leap_at_ns", "q", 136),
    ("leap_delta_ns", "q", 144),
    ("offs_boot_ns", "q", 152),
    ("clocksource", "32s", 160),
    ("boot_id", "16s", 192),
    ("rate_lo_q", "q", 208),
    ("a1_q", "q", 216),
    ("a2_q", "q", 224),
    ("hw_q", "q", 232),
    ("cross_d", "q", 240),
    ("written_at_ns", "q", 248),
    ("vmclock_marker", "Q", 256),
    ("timens_ino", "Q", 264),
    ("timens_dev", "Q", 272),
    ("writer_pid", "Q", 280),
    ("violations", "Q", 288),
]


# ---------------------------------------------------------------- errors

class SkewdError(Exception):
    """Any failure of a read; `kind` names the row of the spec's table."""

    kind = "error"
    status = None


class NotFound(SkewdError):
    kind = "not found"


class Untrusted(SkewdError):
    kind = "not trusted"


class Truncated(SkewdError):
    kind = "truncated"


class BadMagic(SkewdError):
    kind = "bad magic"


class WrongVersion(SkewdError):
    kind = "wrong version"


class MidWrite(SkewdError):
    kind = "mid-write"


class ForeignTimeNamespace(SkewdError):
    kind = "another time namespace"


class VmDisrupted(SkewdError):
    kind = "VM disrupted"


class Interrupted(SkewdError):
    kind = "interrupted"


class ForeignTimeline(SkewdError):
    kind = "foreign timeline"


class NoModel(SkewdError):
    kind = "no model"

    def __init__(self, status, msg=None):
        self.status = status
        super().__init__(msg or "the agent has nothing to vouch for (status "
                         "%s); wait (skewd wait-sync)" % status)


class Unrepresentable(SkewdError):
    kind = "unrepresentable"


# ---------------------------------------------------------------- integers

def floor_div(a, b):
    return a // b                      # Python's // rounds toward -inf


def ceil_div(a, b):
    return -((-a) // b)


def epsilon(lo, hi):
    """ceil((hi - lo) / 2), the difference saturated at 2^63 - 1 (what the
    Rust client does for a width beyond i64; docs/segment.md does not say)."""
    return ceil_div(min(hi - lo, I64_MAX), 2)


def _up(v, k):
    """ceil(v / 2^k) for v >= 0."""
    return (v >> k) + (1 if v & ((1 << k) - 1) else 0)


def _fits(v):
    return I64_MIN <= v <= I64_MAX


# ---------------------------------------------------------------- the read

class Reading:
    """One interval: UTC and leap-free bounds (ns), epsilon, status."""

    __slots__ = ("earliest_ns", "latest_ns", "earliest_leapfree_ns",
                 "latest_leapfree_ns", "epsilon_ns", "status", "raw_ns",
                 "path")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __getitem__(self, k):
        return getattr(self, k)

    def __repr__(self):
        return "Reading(%s)" % ", ".join(
            "%s=%r" % (k, getattr(self, k)) for k in self.__slots__)


def _status_name(v):
    return STATUSES.get(v, "unknown")


def _fields(buf):
    return {name: struct.unpack_from("=" + fmt, buf, off)[0]
            for name, fmt, off in _FIELDS}


def _i128(v):
    """v, or None when it does not fit a signed 128-bit integer."""
    return v if I128_MIN <= v <= I128_MAX else None


def _wander(anchor, x, ri, rj, D):
    """The wander term of the exact path, or None when an intermediate
    product leaves the signed 128-bit range: then the evidence bounds
    nothing and the spread is the hardware bound alone. (docs/segment.md
    says the Rust code "saturates products beyond +-2^126"; what it does,
    measured against `skewd now --at-raw-ns`, is this: products up to
    2^127 - 1 are exact, and one beyond makes the spread hw.)"""
    a, b = min(anchor, x), max(anchor, x)

    def sq(v):
        return _i128(v * v)

    terms = [_i128(2 * (rj - ri) * (b - a)),
             sq(max(b, rj) - rj), sq(max(a, rj) - rj),
             sq(ri - min(a, ri)), sq(ri - min(b, ri))]
    if None in terms:
        return None
    t, p1, p2, n1, n2 = terms
    twice = _i128(t + (p1 - p2) + (n1 - n2))
    if twice is None:
        return None
    prod = _i128(D * twice)
    if prod is None:
        return None
    return ceil_div(prod, 2 * ONE * NS_PER_S)


def _utc_of(seg, lo, hi, path):
    """The UTC bounds of the leap-free [lo, hi] (step 4 of "Then, on both
    paths"): the leap mark counts on the exact path only."""
    off = seg["utc_offset_ns"]
    if path != "exact" or not seg["flags"] & F_LEAP:
        return (lo - off, hi - off)
    at, delta = seg["leap_at_ns"], seg["leap_delta_ns"]
    base = (lo - off, hi - off)
    if hi < at:
        return base
    after = (max(lo, at) - off - delta, hi - off - delta)
    done = after if lo >= at else (min(lo - off, after[0]),
                                   max(at - off, after[1]))
    if seg["flags"] & F_LEAP_PENDING:
        return (min(base[0], done[0]), max(base[1], done[1]))
    return done


def interval(seg, x, extra):
    """The interval at RAW instant x widened by extra (spec: "The interval
    at x"); seg is a dict of one consistent read. Raises NoModel,
    Unrepresentable."""
    flags = seg["flags"]
    if not flags & F_MODEL:
        raise NoModel(_status_name(seg["status"]))
    anchor = seg["anchor_ns"]
    d = x - anchor
    leap = bool(flags & F_LEAP)
    if flags & F_FAST and not leap and x >= anchor:
        path = "fast"
        rate_lo_q, a1_q, a2_q, hw_q, cross_d = (
            seg["rate_lo_q"], seg["a1_q"], seg["a2_q"], seg["hw_q"],
            seg["cross_d"])
        if d <= cross_d:
            slope = min(_up(a2_q * d, 32) + a1_q, U64_MAX)
            spread = _up(slope * d, 64)
        else:
            spread = _up(hw_q * d, 64)
        spread += 2
        r = (rate_lo_q * d) >> 64      # arithmetic shift: floor
        lo = seg["bound_lo_ns"] + d + r - spread
        hi = seg["bound_hi_ns"] + d + r + 2 + spread
    else:
        path = "exact"
        R = seg["rate_ppt"]
        span = abs(d)
        hw = ceil_div((abs(R) + seg["phi_hw_ppt"]) * span, ONE)
        if flags & F_EVIDENCE:
            spread = hw
            wander = _wander(anchor, x, seg["evidence_from_ns"],
                             seg["evidence_to_ns"], seg["wander_ppt_per_s"])
            if wander is not None:
                spread = min(ceil_div(seg["phi_ppt"] * span, ONE) + wander, hw)
        else:
            spread = hw
        lo = seg["bound_lo_ns"] + d + floor_div(R * d, ONE) - spread
        hi = seg["bound_hi_ns"] + d + ceil_div(R * d, ONE) + spread

    lo -= extra
    hi += extra
    if not (_fits(lo) and _fits(hi)):
        raise Unrepresentable(
            "the interval [%d, %d] does not fit 64-bit ns (beyond 2262); "
            "refused, never clamped" % (lo, hi))

    utc = _utc_of(seg, lo, hi, path)
    if not (_fits(utc[0]) and _fits(utc[1])):
        raise Unrepresentable(
            "the UTC interval [%d, %d] does not fit 64-bit ns" % utc)

    if x > seg["void_after_ns"]:
        st = "unknown"
    elif seg["status"] == 1 and x > seg["sync_until_ns"]:
        st = "free_running"
    else:
        st = _status_name(seg["status"])

    return Reading(earliest_ns=utc[0], latest_ns=utc[1],
                   earliest_leapfree_ns=lo, latest_leapfree_ns=hi,
                   epsilon_ns=epsilon(lo, hi), status=st, raw_ns=x,
                   path=path)


# ---------------------------------------------------------------- paths, trust

def _config_shm_path(config="/etc/skewd/skewd.toml"):
    try:
        with open(config, "rb") as f:
            text = f.read()
    except OSError:
        return None
    try:
        import tomllib                 # Python >= 3.11
        v = tomllib.loads(text.decode()).get("shm_path")
        return v if isinstance(v, str) else None
    except ImportError:
        pass
    except Exception:
        return None
    import re
    m = re.search(rb'^\s*shm_path\s*=\s*"([^"\\]*)"', text, re.M)
    return m.group(1).decode() if m else None


def default_paths():
    """Candidate segment paths, in the spec's order."""
    paths = []
    cfg = _config_shm_path()
    if cfg:
        paths.append(cfg)
    paths.append("/run/skewd/clock")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        paths.append(os.path.join(xdg, "skewd", "clock"))
    paths.append("/tmp/skewd-%d/skewd/clock" % os.geteuid())
    return paths


def _prefixes(d):
    """'/', '/a', '/a/b', ... for an absolute directory d."""
    parts = [p for p in d.split("/") if p]
    out = ["/"]
    for i in range(len(parts)):
        out.append("/" + "/".join(parts[:i + 1]))
    return out


def _check_dirs(d, owner, me):
    """Every directory from / down to d (d absolute, as named or resolved):
    owned by root or by the segment's owner, writable by nobody else, except
    a root-owned sticky directory (such as /tmp). Right inside such a
    directory anyone may create names: there a directory is accepted when
    root owns it, or when the segment's owner owns it and that owner is the
    reader itself. Every symlink met on the way must be owned by root or by
    the segment's owner."""
    chain = _prefixes(d)
    sticky_parent = None
    for p in chain:
        lst = os.lstat(p)
        if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in (0, owner):
            raise Untrusted("%s is a symlink owned by uid %d, neither root "
                            "nor the segment's owner %d"
                            % (p, lst.st_uid, owner))
        st = os.stat(p)
        if not stat.S_ISDIR(st.st_mode):
            raise Untrusted("%s is not a directory" % p)
        if st.st_uid not in (0, owner):
            raise Untrusted("%s is owned by uid %d, neither root nor the "
                            "segment's owner %d" % (p, st.st_uid, owner))
        if sticky_parent is not None and st.st_uid != 0 and st.st_uid != me:
            raise Untrusted(
                "%s belongs to uid %d and sits in %s, which anyone can write: "
                "there only a directory of root or of the reader itself is "
                "trusted" % (p, st.st_uid, sticky_parent))
        sticky_parent = None
        if st.st_mode & 0o022:
            if st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
                sticky_parent = p
            else:
                raise Untrusted("%s is writable by others (mode %o)"
                                % (p, stat.S_IMODE(st.st_mode)))
    if sticky_parent is not None:
        raise Untrusted("the segment sits right inside %s, which anyone can "
                        "write: only a directory there is trusted"
                        % sticky_parent)


def check_trust(path):
    """The spec's trust rule; raises Untrusted (or NotFound)."""
    try:
        lst = os.lstat(path)
        st = os.stat(path)
    except FileNotFoundError as e:
        raise NotFound("cannot open %s: %s; start the agent, or pass the "
                       "path" % (path, e.strerror))
    except OSError as e:
        raise NotFound("cannot open %s: %s" % (path, e.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted("%s is not a regular file" % path)
    if st.st_mode & 0o022:
        raise Untrusted("%s is writable by group or others (mode %o)"
                        % (path, stat.S_IMODE(st.st_mode)))
    owner = st.st_uid
    if stat.S_ISLNK(lst.st_mode) and lst.st_uid not in (0, owner):
        raise Untrusted("the link %s is owned by uid %d, neither root nor "
                        "the segment's owner" % (path, lst.st_uid))
    me = os.geteuid()
    named = os.path.dirname(os.path.abspath(path))
    resolved = os.path.dirname(os.path.realpath(path))
    for d in (named, resolved):
        try:
            _check_dirs(d, owner, me)
        except OSError as e:
            raise Untrusted("cannot check %s: %s" % (d, e.strerror))
    return st


# ---------------------------------------------------------------- the clock

def _timens():
    try:
        st = os.stat("/proc/self/ns/time")
        return (st.st_ino, st.st_dev)
    except OSError:
        return (0, 0)


class Clock:
    """A mapped segment. `path` None: the default locations. `fast`: one
    clock read and no suspend check (hosts that never suspend)."""

    def __init__(self, path=None, fast=False, monotonic=False):
        self.fast = fast
        self.monotonic = monotonic
        self._floor = None             # ((epoch, violations), earliest_lf)
        if path is None:
            tried = default_paths()
            for p in tried:
                if os.path.lexists(p):
                    path = p
                    break
            else:
                raise NotFound("no segment at %s; start the agent, or pass "
                               "the path" % ", ".join(tried))
        self.path = path
        st = check_trust(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NotFound("cannot open %s: %s" % (path, e.strerror))
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                raise Untrusted("%s changed while it was checked" % path)
            if fst.st_size < SIZE:
                raise Truncated("%s has %d bytes, fewer than %d: not a skewd "
                                "segment" % (path, fst.st_size, SIZE))
            self._mm = mmap.mmap(fd, SIZE, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            self._check_header(path)
        except SkewdError:
            self._mm.close()
            raise
        self._timens = _timens()

    def _check_header(self, path):
        magic = self._mm[0:8]
        version, size = struct.unpack_from("=II", self._mm, 8)
        if magic != MAGIC:
            raise BadMagic("%s: bad magic %r, not a skewd segment"
                           % (path, magic))
        if version != VERSION:
            raise WrongVersion("%s: layout version %d, this reader knows %d; "
                               "update the reader (or the agent)"
                               % (path, version, VERSION))
        if size != SIZE:
            raise WrongVersion("%s: size field %d, layout %d has %d"
                               % (path, size, VERSION, SIZE))

    def close(self):
        self._mm.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def read(self):
        """One consistent read of the whole segment (the seqlock), as a
        dict of fields."""
        mm = self._mm
        for _ in range(MAX_TRIES):
            buf = mm[0:SIZE]
            g1 = struct.unpack_from("=Q", buf, 16)[0]
            g2 = struct.unpack_from("=Q", mm, 16)[0]
            if g1 & 1 == 0 and g1 == g2:
                return _fields(buf)
        raise MidWrite("the generation stayed odd for %d tries: the agent "
                       "died while writing; it resets the segment when it "
                       "starts" % MAX_TRIES)

    def _clock(self, seg):
        if self.fast:
            return time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW), 0
        for _ in range(STRICT_TRIES):
            mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            raw = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
            boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            drift = abs(boot - mono - seg["offs_boot_ns"])
            if drift <= MAX_DRIFT_NS:
                return raw, drift
        raise Interrupted("the host was suspended since the agent wrote "
                          "(BOOTTIME - MONOTONIC moved); retry after a moment")

    def now(self):
        """The interval now (a Reading). Raises a SkewdError subclass."""
        seg = self.read()
        if self._timens != (seg["timens_ino"], seg["timens_dev"]):
            raise ForeignTimeNamespace(
                "this process is in another time namespace than the agent "
                "(ours %r, the agent's %r); use the HTTP API (GET /v1/now)"
                % (self._timens, (seg["timens_ino"], seg["timens_dev"])))
        # VMClock: this reader does not map /dev/vmclock0 (optional check).
        x, extra = self._clock(seg)
        if x < seg["written_at_ns"]:
            raise ForeignTimeline(
                "RAW %d is before the agent's write at %d: a faked clock"
                % (x, seg["written_at_ns"]))
        r = interval(seg, x, extra)
        if self.monotonic:
            r = self._clamp(seg, r)
        return r

    def _clamp(self, seg, r):
        """The optional monotone clamp: raise the leap-free earliest to the
        highest one returned before for the same (epoch, violations)."""
        key = (seg["epoch"], seg["violations"])
        e, l = r.earliest_leapfree_ns, r.latest_leapfree_ns
        fl = self._floor
        if (fl is None or fl[0] != key or r.status in ("unknown", "disrupted")
                or fl[1] > l or fl[1] <= e):
            self._floor = (key, e)
            return r
        lo = fl[1]
        utc = _utc_of(seg, lo, l, r.path)
        if not (_fits(utc[0]) and _fits(utc[1])):
            raise Unrepresentable("the UTC interval does not fit 64-bit ns")
        return Reading(earliest_ns=utc[0], latest_ns=utc[1],
                       earliest_leapfree_ns=lo, latest_leapfree_ns=l,
                       epsilon_ns=epsilon(lo, l), status=r.status,
                       raw_ns=r.raw_ns, path=r.path)

    def at(self, raw_ns):
        """The interval at RAW instant raw_ns, extra = 0, without the
        environment checks (time namespace, VMClock, suspend)."""
        seg = self.read()
        return interval(seg, int(raw_ns), 0)

    def _usable(self):
        r = self.now()
        if r.status in ("unknown", "disrupted"):
            raise NoModel(r.status, "status %s: the interval must not be "
                          "acted on" % r.status)
        return r

    def after(self, t_ns, leapfree=False):
        """True when true time is surely after t_ns (UTC, or leap-free)."""
        r = self._usable()
        e = r.earliest_leapfree_ns if leapfree else r.earliest_ns
        return e > t_ns

    def before(self, t_ns, leapfree=False):
        """True when true time is surely before t_ns."""
        r = self._usable()
        l = r.latest_leapfree_ns if leapfree else r.latest_ns
        return l < t_ns


# ---------------------------------------------------------------- CLI

_KEYS = ("earliest_ns", "latest_ns", "earliest_leapfree_ns",
         "latest_leapfree_ns", "epsilon_ns", "status")


def _main(argv=None):
    ap = argparse.ArgumentParser(
        prog="skewd.py", description="Read skewd's shared-memory segment.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_now = sub.add_parser("now", help="the interval now")
    p_now.add_argument("--json", action="store_true")
    p_now.add_argument("--fast", action="store_true",
                       help="one clock read, no suspend check")
    p_now.add_argument("--shm", metavar="PATH")
    p_at = sub.add_parser("at", help="the interval at a RAW instant "
                          "(extra 0, no environment checks)")
    p_at.add_argument("raw_ns", type=int, metavar="RAW_NS")
    p_at.add_argument("--json", action="store_true")
    p_at.add_argument("--shm", metavar="PATH")
    a = ap.parse_args(argv)

    try:
        clock = Clock(a.shm, fast=getattr(a, "fast", False))
        r = clock.now() if a.cmd == "now" else clock.at(a.raw_ns)
    except SkewdError as e:
        msg = "%s: %s" % (e.kind, e)
        if a.json:
            out = {k: None for k in _KEYS}
            out["status"] = e.status
            out["error"] = msg
            print(json.dumps(out))
        else:
            print("skewd.py: %s" % msg, file=sys.stderr)
        return 1
    if a.json:
        out = {k: getattr(r, k) for k in _KEYS}
        out["raw_ns"] = r.raw_ns
        out["path"] = r.path
        print(json.dumps(out))
    else:
        print("earliest  %d\nlatest    %d\nepsilon   %d ns\nstatus    %s"
              % (r.earliest_ns, r.latest_ns, r.epsilon_ns, r.status))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
