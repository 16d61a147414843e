//! The one function that turns a published model and a clock reading into
//! an interval — [`interval`] — used by every reader: the shared-memory
//! client, every HTTP endpoint, metrics, sd_notify and the simulator's
//! checks. A reader reads its clocks once ([`Reading`]), then calls it.
//!
//! The fast path (after the anchor, no leap mark, a fast form published)
//! costs three 64×64→128 multiplies; everything else takes the exact model
//! (`exact`, which the segment reader fetches with a second consistent
//! read: any published model read at any instant is sound). Then the
//! caller's optional monotone clamp on the leap-free scale, then the UTC
//! view. Every bound is converted to 64-bit nanoseconds exactly or refused:
//! clamping would narrow the interval.

use super::model::{timetable, FastForm, Model, Status};
use super::time::{Interval, Nanos, RefTime, Steady};
pub use super::timescale::{Bounds, LeapFree, Timescale, Utc};

/// What a reader needs of a published model for the fast path, as the
/// segment stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotModel {
    /// Anchor on CLOCK_MONOTONIC_RAW.
    pub anchor: Steady,
    /// Leap-free bound at the anchor, lower end.
    pub lo: i64,
    /// ... upper end.
    pub hi: i64,
    /// The fixed-point ageing for instants after the anchor, when exact
    /// enough.
    pub fast: Option<FastForm>,
    /// A leap mark is published: the UTC view needs the exact model.
    pub leap: bool,
    /// The status the model was published with.
    pub status: Status,
    /// Synchronized reads as free_running after this.
    pub sync_until: Steady,
    /// Reads as unknown after this.
    pub void_after: Steady,
    /// Leap-free minus UTC (without a leap mark).
    pub utc_offset: i64,
}

impl HotModel {
    /// The hot fields of `m`; `None` when one does not fit 64 bits (such a
    /// model is not published: clamping would narrow it).
    pub fn of(m: &Model) -> Option<HotModel> {
        Some(HotModel {
            anchor: m.anchor,
            lo: i64::try_from(m.bound.lo.0).ok()?,
            hi: i64::try_from(m.bound.hi.0).ok()?,
            fast: FastForm::of(m),
            leap: m.utc.leap.is_some(),
            status: m.status,
            sync_until: m.sync_until,
            void_after: m.void_after,
            utc_offset: i64::try_from(m.utc.offset.0).ok()?,
        })
    }
}

/// A published model as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The hot fields; `None`: there is no model.
    pub model: Option<HotModel>,
    /// The status published without a model (or with it, at the anchor).
    pub status: Status,
}

/// One clock read by the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// CLOCK_MONOTONIC_RAW.
    pub at: Steady,
    /// Uncertainty the reader's own checks added (the strict read's
    /// BOOTTIME − MONOTONIC mismatch), widening both ends.
    pub extra_ns: i64,
}

/// An interval that contains true time, on both timescales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInterval {
    /// On the UTC timescale (Unix ns).
    pub utc: Bounds<Utc>,
    /// On the leap-free timescale commit-wait uses (equal to `utc` unless a
    /// leap second passed since 2017).
    pub leapfree: Bounds<LeapFree>,
    /// What the interval is good for.
    pub status: Status,
}

impl TimeInterval {
    /// Half the width, rounded up (the same on both timescales away from a
    /// leap second).
    pub fn epsilon_ns(&self) -> i64 {
        let w = self
            .leapfree
            .latest
            .0
            .saturating_sub(self.leapfree.earliest.0);
        w / 2 + w % 2
    }

    /// The bounds on timescale `S`.
    pub fn on<S: Timescale>(&self) -> Bounds<S> {
        S::pick(self.utc, self.leapfree)
    }
}

/// Why a published model gives no interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError<E> {
    /// There is no model (status given).
    #[error("no clock model yet (status {0})")]
    NoModel(Status),
    /// The interval does not fit 64-bit Unix nanoseconds (beyond 2262).
    #[error("the interval does not fit in 64-bit Unix nanoseconds")]
    Unrepresentable,
    /// The exact model could not be read.
    #[error(transparent)]
    Source(E),
}

fn fit<E>(v: i128) -> Result<i64, ReadError<E>> {
    i64::try_from(v).map_err(|_| ReadError::Unrepresentable)
}

/// The interval at `reading` of the model published as `view`. `exact`
/// fetches the full model when the fast path does not apply; `clamp` may
/// raise the leap-free `earliest` (the caller's monotone floor: it gets
/// earliest, latest and the status, and returns the new earliest, which
/// must lie in `[earliest, latest]`).
#[inline(always)]
pub fn interval<E>(
    view: &View,
    reading: Reading,
    exact: impl FnOnce() -> Result<Option<Model>, E>,
    clamp: impl FnOnce(i64, i64, Status) -> i64,
) -> Result<TimeInterval, ReadError<E>> {
    let Some(h) = view.model else {
        return Err(ReadError::NoModel(view.status));
    };
    let at = reading.at;
    let extra = reading.extra_ns as i128;
    let (lf, status, model) = match h.fast {
        Some(form) if !h.leap && at >= h.anchor => {
            let (lo, hi) = form.bound_at(h.lo as i128, h.hi as i128, at.0 - h.anchor.0);
            let status = timetable(h.status, h.sync_until, h.void_after, at);
            (
                Interval {
                    lo: RefTime(lo),
                    hi: RefTime(hi),
                },
                status,
                None,
            )
        }
        _ => {
            let m = exact()
                .map_err(ReadError::Source)?
                .ok_or(ReadError::NoModel(view.status))?;
            let r = m.interval_at(at);
            (r.interval, r.status, Some(m))
        }
    };
    let mut lf = lf.widen(Nanos(extra), Nanos(extra));
    let (lo, hi) = (fit(lf.lo.0)?, fit(lf.hi.0)?);
    lf.lo = RefTime(clamp(lo, hi, status).clamp(lo, hi).into());
    let utc = match model {
        Some(m) => m.utc.to_utc(lf),
        None => Interval {
            lo: RefTime(lf.lo.0 - h.utc_offset as i128),
            hi: RefTime(lf.hi.0 - h.utc_offset as i128),
        },
    };
    Ok(TimeInterval {
        utc: Bounds {
            earliest: Utc(fit(utc.lo.0)?),
            latest: Utc(fit(utc.hi.0)?),
        },
        leapfree: Bounds {
            earliest: LeapFree(fit(lf.lo.0)?),
            latest: LeapFree(fit(lf.hi.0)?),
        },
        status,
    })
}

/// The fast path alone, for a model whose fast form applies (no leap mark,
/// the reading at or after the anchor): the same arithmetic as
/// [`interval`] without a clamp. `None` when the reading precedes the
/// anchor or a bound does not fit 64 bits (the caller then takes
/// [`interval`], which says why).
#[inline(always)]
pub fn fast_interval(h: &HotModel, form: &FastForm, reading: Reading) -> Option<TimeInterval> {
    let at = reading.at;
    if at < h.anchor {
        return None;
    }
    let (lo, hi) = form.bound_at(h.lo as i128, h.hi as i128, at.0 - h.anchor.0);
    let extra = reading.extra_ns as i128;
    let (lo, hi) = (
        i64::try_from(lo - extra).ok()?,
        i64::try_from(hi + extra).ok()?,
    );
    Some(TimeInterval {
        utc: Bounds {
            earliest: Utc(lo.checked_sub(h.utc_offset)?),
            latest: Utc(hi.checked_sub(h.utc_offset)?),
        },
        leapfree: Bounds {
            earliest: LeapFree(lo),
            latest: LeapFree(hi),
        },
        status: timetable(h.status, h.sync_until, h.void_after, at),
    })
}

/// No clamp.
pub fn unclamped(lo: i64, _: i64, _: Status) -> i64 {
    lo
}

/// The interval of an in-process model (HTTP, metrics, the simulator):
/// the same function, with the model at hand for the exact path.
pub fn interval_of(
    model: Option<&Model>,
    status: Status,
    reading: Reading,
) -> Result<TimeInterval, ReadError<std::convert::Infallible>> {
    let hot = match model {
        Some(m) => Some(HotModel::of(m).ok_or(ReadError::Unrepresentable)?),
        None => None,
    };
    let view = View { model: hot, status };
    interval(&view, reading, || Ok(model.copied()), unclamped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::leap::UtcMapping;
    use crate::core::model::Ageing;
    use crate::core::time::{Rate, NS_PER_S};

    fn model(leap: bool) -> Model {
        let anchor = Steady(1_000 * NS_PER_S as i64);
        Model {
            anchor,
            bound: Interval {
                lo: RefTime(1_800_000_000 * NS_PER_S),
                hi: RefTime(1_800_000_000 * NS_PER_S + 80_000),
            },
            ageing: Ageing {
                rate: Rate::from_ppb(1234),
                phi: Rate::from_ppm(1),
                evidence: Some((anchor.plus(Nanos::from_secs(-200)), anchor)),
                wander: Rate::from_ppb(20),
                phi_hw: Rate::from_ppm(200),
            },
            status: Status::Synchronized,
            sync_until: anchor.plus(Nanos::from_secs(64)),
            void_after: anchor.plus(Nanos::from_secs(3600)),
            utc: UtcMapping {
                offset: Nanos(0),
                leap: leap.then_some(crate::core::leap::LeapMark {
                    at: RefTime(1_800_000_000 * NS_PER_S - NS_PER_S),
                    delta: Nanos(NS_PER_S),
                    phase: crate::core::leap::LeapPhase::Done,
                }),
            },
        }
    }

    /// The fast path and the exact path agree (the fast one contains the
    /// exact one and is at most a few ns wider), and so do their statuses,
    /// before and after sync-until and void-after.
    #[test]
    fn fast_and_exact_paths_agree() {
        let m = model(false);
        let view = View {
            model: HotModel::of(&m),
            status: m.status,
        };
        for d in [
            0i64,
            1,
            1_000_000,
            63 * NS_PER_S as i64,
            65 * NS_PER_S as i64,
            3601 * NS_PER_S as i64,
        ] {
            let r = Reading {
                at: m.anchor.plus(Nanos(d.into())),
                extra_ns: 7,
            };
            let fast = interval(
                &view,
                r,
                || -> Result<_, ()> { panic!("fast path") },
                unclamped,
            )
            .unwrap();
            let slow = interval(
                &View {
                    model: view.model.map(|h| HotModel { fast: None, ..h }),
                    status: m.status,
                },
                r,
                || Ok::<_, ()>(Some(m)),
                unclamped,
            )
            .unwrap();
            // The lean reader's fast path gives the very same interval.
            let h = view.model.unwrap();
            assert_eq!(fast_interval(&h, &h.fast.unwrap(), r), Some(fast));
            assert_eq!(fast.status, slow.status, "at +{d}");
            assert!(fast.leapfree.earliest <= slow.leapfree.earliest);
            assert!(fast.leapfree.latest >= slow.leapfree.latest);
            assert!(slow.leapfree.earliest.0 - fast.leapfree.earliest.0 <= 8);
            assert!(fast.leapfree.latest.0 - slow.leapfree.latest.0 <= 10);
        }
        // before the anchor: the exact path, asked for
        let r = Reading {
            at: m.anchor.plus(Nanos(-5)),
            extra_ns: 0,
        };
        let mut asked = false;
        interval(
            &view,
            r,
            || {
                asked = true;
                Ok::<_, ()>(Some(m))
            },
            unclamped,
        )
        .unwrap();
        assert!(asked);
        let h = view.model.unwrap();
        assert_eq!(fast_interval(&h, &h.fast.unwrap(), r), None);
    }

    #[test]
    fn a_leap_mark_takes_the_exact_path_and_the_clamp_stays_inside() {
        let m = model(true);
        let view = View {
            model: HotModel::of(&m),
            status: m.status,
        };
        let r = Reading {
            at: m.anchor,
            extra_ns: 0,
        };
        let t = interval(
            &view,
            r,
            || Ok::<_, ()>(Some(m)),
            |lo, hi, _| (lo + hi) / 2 + 1_000_000,
        )
        .unwrap();
        // clamped into the interval, never past latest
        assert_eq!(t.leapfree.earliest, t.leapfree.latest);
        assert_eq!(t.utc.earliest.0, t.leapfree.earliest.0 - NS_PER_S as i64);
        assert_eq!(
            interval(
                &View {
                    model: None,
                    status: Status::Unknown
                },
                r,
                || Ok::<_, ()>(None),
                unclamped
            ),
            Err(ReadError::NoModel(Status::Unknown))
        );
    }
}
