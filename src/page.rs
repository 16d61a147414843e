//! The status page at `/`: server-rendered HTML with inline SVG and no
//! external assets or scripts (its Content-Security-Policy forbids them),
//! for people without a Grafana. It shows the same figures as `/v1/status`
//! at the same read, and the last hour of the agent's history: the error
//! bound ε with the status, the system clock's skew with its uncertainty,
//! and every source's offset as the interval its latest sample gave.
//!
//! Figures a program may want carry `data-*` attributes in nanoseconds
//! (`#status[data-status]`, `#epsilon[data-ns]`, `#skew[data-ns]`, and per
//! source row `data-name`, `data-state`, `data-offset-ns`), so tests and
//! scrapers never parse the human text.

use crate::core::model::Status;
use crate::core::source::SourceState;
use crate::human;
use crate::state::{Point, Shared, Snapshot, SourcePoint, HISTORY_EVERY, HISTORY_POINTS};
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

/// What the page may load: nothing but itself and its inline styles.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page reloads itself this often (s).
const REFRESH_S: u32 = 10;

/// `GET /`.
pub async fn index(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.get();
    let history = downsample(&s.history(), DRAWN_POINTS);
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(render(&snap, &history, &host)),
    )
        .into_response()
}

/// Points drawn per series at most (the history's hour in 30 s buckets).
pub const DRAWN_POINTS: usize = 120;
/// Sources charted at most (the table lists every one).
pub const CHARTED_SOURCES: usize = 16;

/// How much a status says something is wrong (a bucket shows its worst).
fn badness(s: Status) -> u8 {
    match s {
        Status::Synchronized => 0,
        Status::FreeRunning => 1,
        Status::Unknown => 2,
        Status::Disrupted => 3,
    }
}

/// The history in at most `max` buckets of consecutive points, each drawn
/// as one: its newest instant, its worst status, its widest ε, the hull of
/// its skews and of each source's offset intervals (a source's state is
/// its least trusted one in the bucket). Bounds the page's size and cost
/// whatever the number of points.
pub fn downsample(history: &[Arc<Point>], max: usize) -> Vec<Point> {
    use crate::core::publish::Skew;
    use crate::core::time::Nanos;
    let per = history.len().div_ceil(max.max(1)).max(1);
    history
        .chunks(per)
        .map(|b| {
            let last = &b[b.len() - 1];
            let hull = |v: &mut dyn Iterator<Item = (i128, i128)>| {
                v.fold(None, |acc: Option<(i128, i128)>, (lo, hi)| {
                    Some(acc.map_or((lo, hi), |(a, z)| (a.min(lo), z.max(hi))))
                })
            };
            let skew = hull(&mut b.iter().filter_map(|p| {
                p.skew
                    .map(|k| (k.offset.0 - k.uncertainty.0, k.offset.0 + k.uncertainty.0))
            }))
            .map(|(lo, hi)| Skew {
                offset: Nanos(lo + (hi - lo) / 2),
                uncertainty: Nanos((hi - lo + 1) / 2),
            });
            let sources = (0..last.sources.len())
                .map(|i| {
                    let pts: Vec<&SourcePoint> =
                        b.iter().filter_map(|p| p.sources.get(i)).collect();
                    let iv = hull(&mut pts.iter().filter_map(|s| {
                        Some((s.offset?.0 - s.half_width?.0, s.offset?.0 + s.half_width?.0))
                    }));
                    let state = pts
                        .iter()
                        .map(|s| s.state)
                        .find(|s| !trusted(*s))
                        .unwrap_or(pts[pts.len() - 1].state);
                    SourcePoint {
                        state,
                        offset: iv.map(|(lo, hi)| Nanos(lo + (hi - lo) / 2)),
                        half_width: iv.map(|(lo, hi)| Nanos((hi - lo + 1) / 2)),
                    }
                })
                .collect();
            Point {
                at: last.at,
                status: b
                    .iter()
                    .map(|p| p.status)
                    .max_by_key(|s| badness(*s))
                    .unwrap_or(last.status),
                epsilon_ns: b.iter().filter_map(|p| p.epsilon_ns).max(),
                skew,
                sources,
            }
        })
        .collect()
}

/// States whose offsets the sources chart is scaled to: the ones skewd
/// used or could use at that point.
fn trusted(s: SourceState) -> bool {
    matches!(s, SourceState::Selected | SourceState::Candidate)
}

/// Text safe inside HTML elements and quoted attributes.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn clamp(n: i128) -> i64 {
    n.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The colour that says what a status means.
fn status_colour(s: Status) -> &'static str {
    match s {
        Status::Synchronized => "#2e7d32",
        Status::FreeRunning => "#ef6c00",
        Status::Disrupted => "#c62828",
        Status::Unknown => "#757575",
    }
}

fn state_colour(s: SourceState) -> &'static str {
    match s {
        SourceState::Selected => "#2e7d32",
        SourceState::Candidate => "#1565c0",
        SourceState::Falseticker => "#c62828",
        SourceState::Unreachable => "#757575",
        SourceState::Invalid => "#6a1b9a",
    }
}

/// One colour per source slot.
const PALETTE: [&str; 8] = [
    "#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#827717",
];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:960px;\
color:#212121;padding:0 1em}h1{display:inline;margin-right:.5em}h2{font-size:1.05em;margin:1.4em 0 .4em}\
.badge{color:#fff;padding:.2em .6em;border-radius:.3em;font-weight:600;vertical-align:super;margin-right:.6em}\
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs div{border:1px solid #ddd;border-radius:.4em;\
padding:.5em .8em;min-width:12em}.figs b{display:block;font-size:1.3em}.sub,.note{color:#616161;\
font-size:.9em}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;\
border-bottom:1px solid #eee}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
svg{background:#fafafa;border:1px solid #eee}svg text{font:11px sans-serif;fill:#424242}\
.key span{display:inline-block;margin-right:1em}.key i{display:inline-block;width:.8em;height:.8em;\
margin-right:.3em;border-radius:.15em}";

/// The whole page for `snap` and its `history` (oldest first).
pub fn render(snap: &Snapshot, history: &[Point], host: &str) -> String {
    let (read, reading) = snap.now_read();
    let budget = snap.budget(&read, reading);
    let now = crate::http::NowJson::of(read, reading.at);
    let p = &snap.publication;
    let mut o = String::with_capacity(64 * 1024);
    let status = now.status.as_str();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <link rel=\"icon\" href=\"data:,\"><title>skewd · {} · {status}</title>\
         <style>{STYLE}</style></head><body><header><h1>skewd</h1>\
         <span class=\"badge\" id=\"status\" data-status=\"{status}\" style=\"background:{}\">{status}</span>\
         <span class=\"sub\">on {}</span></header>",
        esc(host),
        status_colour(now.status),
        esc(host),
    );

    // The figures at this read.
    o.push_str("<section class=\"figs\">");
    match (now.earliest_ns, now.latest_ns) {
        (Some(e), Some(l)) => {
            let mid = e + (l - e) / 2;
            let _ = write!(
                o,
                "<div><span class=\"sub\">time now (centre)</span><b id=\"now\" data-earliest-ns=\"{e}\" \
                 data-latest-ns=\"{l}\">{}</b><span class=\"sub\">surely within [{}, {}]</span></div>",
                human::rfc3339(mid),
                human::rfc3339(e),
                human::rfc3339(l)
            );
        }
        _ => o.push_str(
            "<div><span class=\"sub\">time now</span><b id=\"now\">no interval</b>\
             <span class=\"sub\">the agent has no model it can vouch for</span></div>",
        ),
    }
    let _ = write!(
        o,
        "<div><span class=\"sub\">error bound ε (half-width)</span><b id=\"epsilon\"{}>{}</b></div>",
        now.epsilon_ns
            .map_or(String::new(), |e| format!(" data-ns=\"{e}\"")),
        now.epsilon_ns.map_or("—".into(), human::ns)
    );
    match p.skew {
        Some(k) => {
            let _ = write!(
                o,
                "<div><span class=\"sub\">system clock skew (REALTIME − true)</span>\
                 <b id=\"skew\" data-ns=\"{}\" data-uncertainty-ns=\"{}\">{} ± {}</b></div>",
                clamp(k.offset.0),
                clamp(k.uncertainty.0),
                human::signed_ns(clamp(k.offset.0)),
                human::ns(clamp(k.uncertainty.0))
            );
        }
        None => o.push_str(
            "<div><span class=\"sub\">system clock skew (REALTIME − true)</span><b id=\"skew\">—</b></div>",
        ),
    }
    if let Some(m) = p.model.as_ref() {
        let _ = write!(
            o,
            "<div><span class=\"sub\">frequency (vs. MONOTONIC_RAW)</span><b id=\"frequency\">{:+.3} ± {:.3} ppm</b></div>",
            m.ageing.rate.as_ppm_f64(),
            m.ageing.phi.as_ppm_f64()
        );
    }
    let _ = write!(
        o,
        "<div><span class=\"sub\">clock steps · bound violations</span><b>{} · {}</b></div>",
        p.steps, p.violations
    );
    if let Some(at) = p.leap.pending_at_unix_ns {
        let _ = write!(
            o,
            "<div><span class=\"sub\">leap second pending</span><b>{}</b></div>",
            human::rfc3339(at)
        );
    }
    if let Some(problem) = snap.publishing_problem() {
        let _ = write!(
            o,
            "<div><span class=\"sub\">not ready</span><b>{}</b></div>",
            esc(&problem)
        );
    }
    o.push_str("</section>");

    if let Some(b) = &budget {
        budget_chart(&mut o, snap, b);
    }
    charts(&mut o, snap, history);
    sources_table(&mut o, snap);

    let _ = write!(
        o,
        "<footer class=\"note\"><p>Offsets are <em>source minus skewd</em>: positive means the \
         source's time is ahead of skewd's estimate (chronyc shows the opposite sign). A source's \
         bar is the interval its latest sample gave; an honest source's bar meets the grey ±ε band. \
         History: a point every {} s, the last {} min; it starts when the agent does.</p>\
         <p>Machine-readable: <a href=\"/v1/status\">/v1/status</a> · <a href=\"/v1/now\">/v1/now</a> · \
         <a href=\"/metrics\">/metrics</a>. This page reloads every {REFRESH_S} s.</p></footer></body></html>",
        HISTORY_EVERY.0 / 1_000_000_000,
        HISTORY_POINTS as i128 * HISTORY_EVERY.0 / 60_000_000_000
    );
    o
}

/// Colours of the ε budget's parts, in [`Part::ALL`] order.
const PART_COLOURS: [&str; crate::core::budget::PARTS] = [
    "#1565c0", "#6a1b9a", "#2e7d32", "#9e9d24", "#00838f", "#4e342e", "#ef6c00", "#c62828",
    "#ad1457", "#546e7a", "#bdbdbd",
];

/// What ε is made of: one bar, a segment per part (its share of the
/// half-width), the signed centre gap beside it, and where each end comes
/// from.
fn budget_chart(o: &mut String, snap: &Snapshot, b: &crate::core::budget::Budget) {
    use crate::core::budget::Part;
    let halves = b.halves();
    let positive: f64 = halves
        .iter()
        .filter(|(k, _)| *k != "centre_gap")
        .map(|(_, v)| v.max(0.0))
        .sum();
    let gap = b.centre_gap_twice.0 as f64 / 2.0;
    o.push_str("<h2>What ε is made of (each part's share of the half-width)</h2>");
    let _ = write!(
        o,
        "<svg id=\"chart-budget\" viewBox=\"0 0 {W} 34\" width=\"{W}\" height=\"34\" role=\"img\" \
         aria-label=\"error bound budget\">"
    );
    let mut x = 0.0;
    let scale = if positive > 0.0 { W / positive } else { 0.0 };
    for (i, p) in Part::ALL.iter().enumerate() {
        let v = halves[i].1;
        if v <= 0.0 {
            continue;
        }
        let w = v * scale;
        let _ = write!(
            o,
            "<rect x=\"{x:.2}\" y=\"4\" width=\"{w:.2}\" height=\"26\" fill=\"{}\" data-part=\"{}\" \
             data-ns=\"{v}\"><title>{}: {}</title></rect>",
            PART_COLOURS[i],
            p.as_str(),
            p.as_str().replace('_', " "),
            human::ns(v.round() as i64)
        );
        x += w;
    }
    o.push_str("</svg><p class=\"key\">");
    for (i, p) in Part::ALL.iter().enumerate() {
        let v = halves[i].1;
        if v == 0.0 {
            continue;
        }
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{} {}</span>",
            PART_COLOURS[i],
            p.as_str().replace('_', " "),
            human::ns(v.round() as i64)
        );
    }
    let end = |side: &crate::core::budget::Side| {
        let name = side
            .source
            .and_then(|i| snap.sources.get(i.0))
            .map_or("an unknown source".to_owned(), |v| esc(&v.name));
        if side.carried {
            format!("{name} (carried by the model)")
        } else {
            name
        }
    };
    let _ = write!(
        o,
        "</p><p class=\"note\" id=\"budget-gap\" data-ns=\"{gap}\">The bar adds up to {}; \
         centre gap {} ({}). Lower end from {}, {} below its centre; upper end from {}, {} above \
         its centre.</p>",
        human::ns(positive.round() as i64),
        human::signed_ns(gap.round() as i64),
        if b.centre_gap_twice.0 == 0 {
            "both ends are measured from one centre"
        } else if gap < 0.0 {
            "the ends come from samples whose centres overlap: the bar overstates ε by as much"
        } else {
            "half the distance from the lower end's centre up to the upper end's"
        },
        end(&b.sides.lo),
        human::ns(clamp(b.sides.lo.parts.total().0)),
        end(&b.sides.hi),
        human::ns(clamp(b.sides.hi.parts.total().0)),
    );
}

/// Geometry of one chart: the last hour left to right, values bottom to
/// top.
struct Frame {
    lo: f64,
    hi: f64,
    /// Seconds of history shown, ending now.
    span_s: f64,
}

const W: f64 = 920.0;
const H: f64 = 200.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 24.0;

impl Frame {
    /// A frame that shows `lo..=hi` (ns), widened a little, over the last
    /// `span_s` seconds.
    fn new(lo: f64, hi: f64, symmetric: bool, span_s: f64) -> Frame {
        let (mut lo, mut hi) = if symmetric {
            let m = lo.abs().max(hi.abs()).max(1.0) * 1.15;
            (-m, m)
        } else {
            (0.0, hi.max(1.0) * 1.15)
        };
        if hi <= lo {
            hi = lo + 1.0;
        }
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (-1.0, 1.0);
        }
        Frame { lo, hi, span_s }
    }
    /// x of `age_s` seconds ago.
    fn x(&self, age_s: f64) -> f64 {
        let f = 1.0 - (age_s / self.span_s).clamp(0.0, 1.0);
        LEFT + f * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        let f = ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        TOP + (1.0 - f) * (H - TOP - BOTTOM)
    }
    /// The axes, grid and labels, opening an `<svg>`.
    fn open(&self, o: &mut String, id: &str, label: &str) {
        let _ = write!(
            o,
            "<svg id=\"{id}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {H}\" width=\"100%\" \
             xmlns=\"http://www.w3.org/2000/svg\">",
            esc(label)
        );
        for i in 0..=4 {
            let v = self.lo + (self.hi - self.lo) * i as f64 / 4.0;
            let y = self.y(v);
            let _ = write!(
                o,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e0e0e0\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - RIGHT,
                LEFT - 4.0,
                y + 4.0,
                human::ns(v.round() as i64)
            );
        }
        if self.lo < 0.0 && self.hi > 0.0 {
            let y = self.y(0.0);
            let _ = write!(
                o,
                "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#9e9e9e\"/>",
                W - RIGHT
            );
        }
        // A tick every whole number of minutes, at most 7 labels.
        let span_min = (self.span_s / 60.0).round().max(1.0) as i64;
        let every = (span_min + 5) / 6;
        for m in (0..=span_min).step_by(every.max(1) as usize) {
            let age = m as f64 * 60.0;
            let (anchor, label) = match m {
                0 => ("end", "now".to_owned()),
                m if m == span_min => ("start", format!("−{m} min")),
                m => ("middle", format!("−{m} min")),
            };
            let _ = write!(
                o,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{label}</text>",
                self.x(age),
                H - 6.0,
            );
        }
    }
}

/// Seconds between `p` and the newest publication.
fn age_s(snap: &Snapshot, p: &Point) -> f64 {
    snap.publication.at.since(p.at).0 as f64 / 1e9
}

fn charts(o: &mut String, snap: &Snapshot, history: &[Point]) {
    if history.is_empty() {
        o.push_str("<p class=\"note\">No history yet: the agent keeps a point every 10 s.</p>");
        return;
    }
    // The history so far, in steps of 5 min, up to the hour it keeps.
    let oldest = history.first().map_or(0.0, |p| age_s(snap, p));
    let span = ((oldest / 300.0).ceil() * 300.0).clamp(300.0, 3600.0);
    let eps: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| p.epsilon_ns.map(|e| (age_s(snap, p), e as f64)))
        .collect();

    // ε and the status.
    let _ = write!(
        o,
        "<h2>Error bound ε over the last {} min, and the status</h2>",
        span / 60.0
    );
    let f = Frame::new(
        0.0,
        eps.iter().map(|e| e.1).fold(0.0, f64::max),
        false,
        span,
    );
    f.open(o, "chart-epsilon", "error bound over the last hour");
    for (i, p) in history.iter().enumerate() {
        let x0 = f.x(age_s(snap, p));
        let x1 = history.get(i + 1).map_or(f.x(0.0), |n| f.x(age_s(snap, n)));
        let _ = write!(
            o,
            "<rect x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"5\" fill=\"{}\"><title>{}</title></rect>",
            H - BOTTOM + 1.0,
            (x1 - x0).max(0.5),
            status_colour(p.status),
            p.status.as_str()
        );
    }
    polyline(o, &f, &eps, "#1565c0");
    o.push_str("</svg><p class=\"key\">");
    for s in Status::ALL {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            status_colour(s),
            s.as_str()
        );
    }
    o.push_str("</p>");

    // The system clock's skew with its uncertainty.
    let skew: Vec<(f64, f64, f64)> = history
        .iter()
        .filter_map(|p| {
            p.skew.map(|k| {
                (
                    age_s(snap, p),
                    (k.offset.0 - k.uncertainty.0) as f64,
                    (k.offset.0 + k.uncertainty.0) as f64,
                )
            })
        })
        .collect();
    o.push_str("<h2>System clock skew (REALTIME − true time), with its uncertainty</h2>");
    let (lo, hi) = extent(skew.iter().map(|s| (s.1, s.2)));
    let f = Frame::new(lo, hi, true, span);
    f.open(o, "chart-skew", "system clock skew over the last hour");
    bars(o, &f, &skew, "#6a1b9a", 3.0);
    let centre: Vec<(f64, f64)> = skew.iter().map(|s| (s.0, (s.1 + s.2) / 2.0)).collect();
    polyline(o, &f, &centre, "#4a148c");
    o.push_str("</svg>");

    // Per source: offset intervals, over the ±ε band.
    o.push_str("<h2>Sources: offset from skewd's centre, as the interval of each sample (source − skewd)</h2>");
    let n = snap.sources.len().min(CHARTED_SOURCES);
    // Per source: (age, lo, hi, trusted at that point).
    let series: Vec<Vec<(f64, f64, f64, bool)>> = (0..n)
        .map(|i| {
            history
                .iter()
                .filter_map(|p| {
                    let s = p.sources.get(i)?;
                    let (off, hw) = (s.offset?.0, s.half_width?.0);
                    Some((
                        age_s(snap, p),
                        (off - hw) as f64,
                        (off + hw) as f64,
                        trusted(s.state),
                    ))
                })
                .collect()
        })
        .collect();
    // The scale follows the points where skewd used or could use the
    // source, and its own ±ε; the others are drawn at the edge they lie
    // beyond (a liar stays off the scale after it goes silent).
    let (mut lo, mut hi) = extent(series.iter().flatten().filter(|p| p.3).map(|p| (p.1, p.2)));
    let (elo, ehi) = extent(eps.iter().map(|e| (-e.1, e.1)));
    lo = lo.min(elo);
    hi = hi.max(ehi);
    let f = Frame::new(lo, hi, true, span);
    f.open(o, "chart-sources", "source offsets over the last hour");
    if !eps.is_empty() {
        let mut d = String::new();
        for (i, (a, e)) in eps.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                f.x(*a),
                f.y(*e)
            );
        }
        for (a, e) in eps.iter().rev() {
            let _ = write!(d, "L{:.1},{:.1}", f.x(*a), f.y(-*e));
        }
        let _ = write!(o, "<path d=\"{d}Z\" fill=\"#e0e0e0\" stroke=\"none\"/>");
    }
    for (i, s) in series.iter().enumerate() {
        // Spread the sources a little so that equal intervals stay visible.
        let dx = (i as f64 - (n as f64 - 1.0) / 2.0) * 2.0;
        let pts: Vec<(f64, f64, f64)> = s.iter().map(|p| (p.0, p.1, p.2)).collect();
        bars_at(o, &f, &pts, PALETTE[i % PALETTE.len()], 1.5, dx);
    }
    o.push_str("</svg><p class=\"key\">");
    for (i, v) in snap.sources.iter().take(n).enumerate() {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            PALETTE[i % PALETTE.len()],
            esc(&v.name)
        );
    }
    if snap.sources.len() > n {
        let _ = write!(
            o,
            "<span>(the first {n} of {} sources; the table lists all)</span>",
            snap.sources.len()
        );
    }
    o.push_str("<span><i style=\"background:#e0e0e0\"></i>skewd ±ε</span></p>");
    let off_scale: Vec<String> = (0..n)
        .filter(|i| {
            series[*i]
                .iter()
                .any(|p| !p.3 && (p.1 < f.lo || p.2 > f.hi))
        })
        .map(|i| esc(&snap.sources[i].name))
        .collect();
    if !off_scale.is_empty() {
        let _ = write!(
            o,
            "<p class=\"note\">Off the scale at times (drawn at its edge): {}.</p>",
            off_scale.join(", ")
        );
    }
}

/// The lowest and highest of `v`'s pairs (0, 0 when empty).
fn extent(v: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    v.fold(None, |acc: Option<(f64, f64)>, (a, b)| {
        Some(acc.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b))))
    })
    .unwrap_or((0.0, 0.0))
}

fn polyline(o: &mut String, f: &Frame, pts: &[(f64, f64)], colour: &str) {
    if pts.is_empty() {
        return;
    }
    o.push_str("<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"");
    o.push_str(colour);
    o.push_str("\" points=\"");
    for (a, v) in pts {
        let _ = write!(o, "{:.1},{:.1} ", f.x(*a), f.y(*v));
    }
    o.push_str("\"/>");
}

fn bars(o: &mut String, f: &Frame, pts: &[(f64, f64, f64)], colour: &str, width: f64) {
    bars_at(o, f, pts, colour, width, 0.0)
}

/// Vertical bars from lo to hi at each point's age, `dx` pixels aside.
fn bars_at(o: &mut String, f: &Frame, pts: &[(f64, f64, f64)], colour: &str, width: f64, dx: f64) {
    if pts.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<path fill=\"none\" stroke=\"{colour}\" stroke-opacity=\"0.7\" stroke-width=\"{width}\" d=\""
    );
    for (a, lo, hi) in pts {
        let x = f.x(*a) + dx;
        let (y0, y1) = (f.y(*lo), f.y(*hi));
        // At least a pixel, so a narrow interval still shows.
        let y1 = if (y0 - y1).abs() < 1.0 { y0 - 1.0 } else { y1 };
        let _ = write!(o, "M{x:.1},{y0:.1}V{y1:.1}");
    }
    o.push_str("\"/>");
}

fn sources_table(o: &mut String, snap: &Snapshot) {
    o.push_str(
        "<h2>Sources</h2><table id=\"sources\"><thead><tr><th>source</th><th>address</th>\
         <th>state</th><th>reach</th><th>offset (source − skewd) ± half-width</th>\
         <th>delay</th><th>root distance</th><th>ok / timeouts / bad</th><th>NTS</th></tr></thead><tbody>",
    );
    if snap.sources.is_empty() {
        o.push_str("<tr><td colspan=\"9\">no sources configured</td></tr>");
    }
    for v in &snap.sources {
        let r = &v.report;
        let opt = |n: Option<crate::core::time::Nanos>| {
            n.map_or("—".to_owned(), |n| human::ns(clamp(n.0)))
        };
        let offset = match (r.offset, r.half_width) {
            (Some(off), Some(hw)) => format!(
                "{} ± {}",
                human::signed_ns(clamp(off.0)),
                human::ns(clamp(hw.0))
            ),
            (Some(off), None) => human::signed_ns(clamp(off.0)),
            _ => "—".into(),
        };
        let address = match (&v.address, &v.duplicate_of) {
            (Some(a), _) => a.to_string(),
            (None, Some(d)) => format!("unused: same address as {d}"),
            (None, None) => "unresolved".into(),
        };
        let c = &r.counters;
        // Plain NTP, or NTS: authenticated, and what failed.
        let (nts_attr, nts) = match &r.nts {
            None => ("plain", "—".to_owned()),
            Some(n) if n.authenticated => (
                "authenticated",
                format!(
                    "authenticated · {} cookies · {} failures",
                    n.cookies, n.auth_failures
                ),
            ),
            Some(n) => (
                "unauthenticated",
                format!(
                    "<b style=\"color:#c62828\">not authenticated</b> · {} cookies · {} failures",
                    n.cookies, n.auth_failures
                ),
            ),
        };
        let _ = write!(
            o,
            "<tr data-name=\"{}\" data-state=\"{}\" data-nts=\"{nts_attr}\"{}><td>{}</td><td>{}</td>\
             <td style=\"color:{}\">{}</td><td class=\"n\">{:03o}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {} / {}</td><td>{nts}</td></tr>",
            esc(&v.name),
            r.state.as_str(),
            r.offset.map_or(String::new(), |n| format!(
                " data-offset-ns=\"{}\"",
                clamp(n.0)
            )),
            esc(&v.name),
            esc(&address),
            state_colour(r.state),
            r.state.as_str(),
            r.reach,
            offset,
            opt(r.delay),
            opt(r.root_distance),
            c.ok,
            c.timeout,
            c.invalid + c.unexpected + c.implausible,
        );
    }
    o.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            esc("<script>\"a\"&'b'</script>"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn an_empty_agent_renders_a_whole_page() {
        let page = render(&Snapshot::empty(), &[], "host<1>");
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.ends_with("</html>"));
        assert!(page.contains("data-status=\"unknown\""));
        assert!(page.contains("host&lt;1&gt;"));
        assert!(page.contains("No history yet"));
    }

    #[test]
    fn history_draws_without_nan() {
        use crate::core::publish::Skew;
        use crate::core::time::{Nanos, Steady};
        let mut snap = Snapshot::empty();
        snap.publication.at = Steady(4_000_000_000_000);
        let history: Vec<Point> = (0..400)
            .map(|i| Point {
                at: Steady(i * 10_000_000_000),
                status: Status::ALL[i as usize % 4],
                epsilon_ns: (i % 7 != 0).then_some(i * 1000),
                skew: (i % 5 != 0).then_some(Skew {
                    offset: Nanos(i as i128 - 200),
                    uncertainty: Nanos(i as i128 * 10),
                }),
                sources: vec![],
            })
            .collect();
        let page = render(&snap, &history, "h");
        for bad in ["NaN", "inf", "No history yet"] {
            assert!(!page.contains(bad), "{bad}");
        }
        assert!(page.contains("last 60 min"));
    }

    /// 64 sources and a full hour: the page stays small (it is what a
    /// flood of slow readers would hold in memory), every source is in the
    /// table, and the first 16 are charted.
    #[test]
    fn a_full_history_of_64_sources_stays_small() {
        use crate::core::poll::Counters;
        use crate::core::source::{SourceId, SourceReport};
        use crate::core::time::{Nanos, Steady};
        use crate::state::SourceView;
        let mut snap = Snapshot::empty();
        snap.publication.at = Steady(3_600_000_000_000);
        snap.sources = (0..64)
            .map(|i| SourceView {
                name: format!("ntp{i}.example:123"),
                address: None,
                duplicate_of: None,
                report: SourceReport {
                    id: SourceId(i),
                    state: SourceState::Selected,
                    reach: 255,
                    offset: Some(Nanos(i as i128 * 1000)),
                    half_width: Some(Nanos(50_000)),
                    delay: Some(Nanos(20_000)),
                    root_distance: Some(Nanos(10_000)),
                    counters: Counters::default(),
                    poll: Nanos::from_secs(16),
                    dispersion_ages_itself: None,
                    dispersion_ageing_added: None,
                    declared_aged: false,
                    nts: None,
                },
            })
            .collect();
        let history: Vec<Arc<Point>> = (0..HISTORY_POINTS as i64)
            .map(|k| {
                let mut p = Point::of(&snap);
                p.at = Steady(k * 10_000_000_000);
                p.epsilon_ns = Some(60_000 + k);
                Arc::new(p)
            })
            .collect();
        let drawn = downsample(&history, DRAWN_POINTS);
        assert_eq!(drawn.len(), DRAWN_POINTS);
        let page = render(&snap, &drawn, "h");
        eprintln!("page with 64 sources: {} bytes", page.len());
        assert!(page.len() < 96 * 1024, "{} bytes", page.len());
        assert_eq!(page.matches("<tr data-name=").count(), 64);
        assert!(page.contains("the first 16 of 64 sources"));
    }

    #[test]
    fn downsampling_keeps_the_worst_of_each_bucket() {
        use crate::core::time::{Nanos, Steady};
        let mk = |k: i64, st: Status, eps: i64, off: i128| {
            Arc::new(Point {
                at: Steady(k),
                status: st,
                epsilon_ns: Some(eps),
                skew: None,
                sources: vec![SourcePoint {
                    state: if off > 1000 {
                        SourceState::Falseticker
                    } else {
                        SourceState::Selected
                    },
                    offset: Some(Nanos(off)),
                    half_width: Some(Nanos(10)),
                }],
            })
        };
        let h = vec![
            mk(1, Status::Synchronized, 5, 0),
            mk(2, Status::Disrupted, 9, 5000),
            mk(3, Status::Synchronized, 7, 100),
            mk(4, Status::Synchronized, 1, 0),
        ];
        let d = downsample(&h, 2);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].at, d[0].status, d[0].epsilon_ns),
            (Steady(2), Status::Disrupted, Some(9))
        );
        assert_eq!(d[0].sources[0].state, SourceState::Falseticker);
        // The hull of [-10, 10] and [4990, 5010].
        assert_eq!(d[0].sources[0].offset, Some(Nanos(2500)));
        assert_eq!(d[0].sources[0].half_width, Some(Nanos(2510)));
        assert_eq!(
            (d[1].status, d[1].epsilon_ns),
            (Status::Synchronized, Some(7))
        );
    }

    #[test]
    fn frames_stay_finite() {
        for (lo, hi, sym) in [(0.0, 0.0, true), (0.0, 0.0, false), (-5.0, 1e18, true)] {
            let f = Frame::new(lo, hi, sym, 300.0);
            assert!(f.lo < f.hi && f.y(0.0).is_finite() && f.x(1e9).is_finite());
        }
    }
}
