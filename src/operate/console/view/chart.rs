//! A destination's success rate and latency over time, drawn as SVG on the server (the
//! console runs no script): one bar per hour for the success rate (delivered among delivered
//! and dead-lettered), one point per hour for the mean latency of the partner calls, each with
//! its numbers as a tooltip (`<title>`) and again in a table. Drawn from the journal's
//! per-minute counts, summed by hour.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::journal::HourCount;

/// One hour of a destination's deliveries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hour {
    pub start: DateTime<Utc>,
    pub delivered: u64,
    pub dead: u64,
    /// Partner calls with a latency, and their latencies summed.
    pub calls: u64,
    pub latency_ms_sum: f64,
}

impl Hour {
    /// Delivered among the final outcomes, in percent; `None` with none.
    pub fn rate(&self) -> Option<f64> {
        let all = self.delivered + self.dead;
        (all > 0).then(|| self.delivered as f64 * 100.0 / all as f64)
    }

    /// The mean latency of the hour's calls; `None` without calls.
    pub fn mean_latency(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.latency_ms_sum / self.calls as f64)
    }
}

/// `count` hours from `first` (an hour's start), each with what `rows` counted in it; an hour
/// with nothing counted is there, empty. Rows outside those hours are left out.
pub fn hours(rows: &[HourCount], first: DateTime<Utc>, count: usize) -> Vec<Hour> {
    let mut out: Vec<Hour> = (0..count)
        .map(|i| Hour {
            start: first + chrono::Duration::hours(i as i64),
            ..Hour::default()
        })
        .collect();
    for r in rows {
        let i = (r.hour - first).num_hours();
        let Some(h) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        match r.outcome.as_str() {
            "delivered" => h.delivered += r.n,
            "dead_lettered" => h.dead += r.n,
            _ => {}
        }
        h.calls += r.latency_n;
        h.latency_ms_sum += r.latency_ms_sum;
    }
    out
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
/// Room for the values on the left and the hours below.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// Where hour `i` of `n` starts, and how wide its slot is.
fn slot(i: usize, n: usize) -> (f64, f64) {
    let w = (WIDTH - LEFT - 4.0) / n.max(1) as f64;
    (LEFT + i as f64 * w, w)
}

/// The height of `v` out of `max`, in the plot's pixels (0 at the bottom).
fn y(v: f64, max: f64) -> f64 {
    let plot = HEIGHT - BOTTOM - TOP;
    let v = if max > 0.0 {
        (v / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    HEIGHT - BOTTOM - v * plot
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

/// The hour's label under the axis: `14h`, every `every` hours.
fn axis(hours: &[Hour], every: usize) -> Markup {
    html! {
        line x1=(f1(LEFT)) y1=(f1(HEIGHT - BOTTOM)) x2=(f1(WIDTH - 4.0)) y2=(f1(HEIGHT - BOTTOM)) stroke="#9ca3af" {}
        @for (i, h) in hours.iter().enumerate().filter(|(i, _)| i % every.max(1) == 0) {
            @let (x, w) = slot(i, hours.len());
            text x=(f1(x + w / 2.0)) y=(f1(HEIGHT - 5.0)) font-size="10" text-anchor="middle" fill="#6b7280" {
                (h.start.format("%Hh"))
            }
        }
    }
}

/// A horizontal line at `v` of `max`, labelled.
fn grid(v: f64, max: f64, label: &str) -> Markup {
    let at = y(v, max);
    html! {
        line x1=(f1(LEFT)) y1=(f1(at)) x2=(f1(WIDTH - 4.0)) y2=(f1(at)) stroke="#e3e6eb" {}
        text x=(f1(LEFT - 4.0)) y=(f1(at + 3.0)) font-size="10" text-anchor="end" fill="#6b7280" { (label) }
    }
}

fn no_data(what: &str) -> Markup {
    html! {
        text.no-data x=(f1(WIDTH / 2.0)) y=(f1(HEIGHT / 2.0)) font-size="12" text-anchor="middle" fill="#6b7280" {
            "No " (what) " in these hours"
        }
    }
}

/// The success rate per hour: a bar from 0 to 100 %, green from 99 %, amber from 90 %, red
/// below (a red line at the bottom for none delivered); no bar for an hour without a final
/// outcome.
pub fn success_rate(name: &str, hours: &[Hour]) -> Markup {
    let any = hours.iter().any(|h| h.rate().is_some());
    html! {
        svg.chart #success-chart xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width=(WIDTH) height=(HEIGHT) {
            title { "Success rate per hour at " (name) }
            (grid(0.0, 100.0, "0 %")) (grid(50.0, 100.0, "50 %")) (grid(100.0, 100.0, "100 %"))
            @for (i, h) in hours.iter().enumerate() {
                @if let Some(r) = h.rate() {
                    @let (x, w) = slot(i, hours.len());
                    @let top = y(r, 100.0).min(HEIGHT - BOTTOM - 2.0);
                    @let fill = if r >= 99.0 { "#137333" } else if r >= 90.0 { "#d4a017" } else { "#b3261e" };
                    rect.bar x=(f1(x + 1.0)) y=(f1(top)) width=(f1((w - 2.0).max(1.0))) height=(f1(HEIGHT - BOTTOM - top)) fill=(fill)
                        data-hour=(h.start.to_rfc3339()) data-delivered=(h.delivered) data-dead=(h.dead) {
                        title { (h.start.format("%Y-%m-%d %H:00 UTC")) ": " (format!("{r:.1} %")) " (" (h.delivered) " delivered, " (h.dead) " dead-lettered)" }
                    }
                }
            }
            @if !any { (no_data("final outcomes")) }
            (axis(hours, 3))
        }
    }
}

/// A round top for a scale holding `max`: 1, 2 or 5 times a power of ten.
fn ceiling(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= max)
        .unwrap_or(10.0 * p)
}

/// A scale's value in milliseconds: whole when it is (`25 ms`), else to a tenth (`2.5 ms`).
fn ms(v: f64) -> String {
    match v.fract() == 0.0 {
        true => format!("{v:.0} ms"),
        false => format!("{v:.1} ms"),
    }
}

/// The mean latency of the calls per hour: a point each, joined while hours follow each
/// other with calls.
pub fn latency(name: &str, hours: &[Hour]) -> Markup {
    let top = ceiling(
        hours
            .iter()
            .filter_map(Hour::mean_latency)
            .fold(0.0, f64::max),
    );
    let points: Vec<Option<(f64, f64, &Hour, f64)>> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.mean_latency().map(|l| {
                let (x, w) = slot(i, hours.len());
                (x + w / 2.0, y(l, top), h, l)
            })
        })
        .collect();
    let runs: Vec<String> = points
        .split(Option::is_none)
        .filter(|run| run.len() > 1)
        .map(|run| {
            run.iter()
                .flatten()
                .map(|(x, y, _, _)| format!("{},{}", f1(*x), f1(*y)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    html! {
        svg.chart #latency-chart xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width=(WIDTH) height=(HEIGHT) {
            title { "Mean latency of the calls per hour at " (name) }
            (grid(0.0, top, "0 ms")) (grid(top / 2.0, top, &ms(top / 2.0))) (grid(top, top, &ms(top)))
            @for run in &runs {
                polyline points=(run) fill="none" stroke="#1d4ed8" stroke-width="1.5" {}
            }
            @for (x, y, h, l) in points.iter().flatten() {
                circle.point cx=(f1(*x)) cy=(f1(*y)) r="2.5" fill="#1d4ed8"
                    data-hour=(h.start.to_rfc3339()) data-mean-ms=(format!("{l:.1}")) {
                    title { (h.start.format("%Y-%m-%d %H:00 UTC")) ": " (format!("{l:.0} ms")) " mean over " (h.calls) " calls" }
                }
            }
            @if points.iter().all(Option::is_none) { (no_data("calls")) }
            (axis(hours, 3))
        }
    }
}

/// The destination's page: both charts, and their numbers as a table.
pub fn page(name: &str, hours: &[Hour], note: Option<&str>) -> Markup {
    super::layout(
        &format!("{name} over time"),
        html! {
            h1 { (name) " over the last " (hours.len()) " hours" }
            p.muted { "Per hour (UTC), from the journal's per-minute counts; the last hour is the one in progress. Success rate: delivered among delivered and dead-lettered. Latency: the mean of the hour's partner calls." }
            @if let Some(n) = note { p.note { (n) } }
            h2 { "Success rate" }
            (success_rate(name, hours))
            h2 { "Latency" }
            (latency(name, hours))
            table #hours {
                tr { th { "hour (UTC)" } th.num { "delivered" } th.num { "dead letters" } th.num { "success" } th.num { "calls" } th.num { "mean latency" } }
                @for h in hours.iter().rev() {
                    tr {
                        td { (h.start.format("%Y-%m-%d %H:00")) }
                        td.num.delivered { (h.delivered) }
                        td.num.dead { (h.dead) }
                        td.num { @match h.rate() { Some(r) => (format!("{r:.1} %")), None => span.muted { "-" } } }
                        td.num { (h.calls) }
                        td.num { @match h.mean_latency() { Some(l) => (format!("{l:.0} ms")), None => span.muted { "-" } } }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests;
