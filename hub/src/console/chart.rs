//! Charts drawn on the server as SVG: one count as bars (received), another as a line
//! (delivered), one slot per hour or day. No script and no chart service: the page is whole without JavaScript, and the
//! Content-Security-Policy allows no inline style, so colours come from classes in the
//! console's own CSS.

use maud::{html, Markup};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// A series of slots, each `step_ms` long, the first starting at `start_ms`.
pub struct Series<'a> {
    pub title: &'a str,
    pub start_ms: u64,
    pub step_ms: u64,
    pub received: &'a [u32],
    pub delivered: &'a [u32],
    /// What the bars and the line count.
    pub names: (&'a str, &'a str),
    /// A label under every this many slots.
    pub label_every: usize,
    /// How a label reads: `[hour]:00` or `[day] [month repr:short]`.
    pub daily_labels: bool,
}

/// The smallest "round" number at or above `n` (1, 2, 5 × 10^k).
pub fn nice_max(n: u32) -> u32 {
    let n = n.max(1);
    let mut p = 1u32;
    loop {
        for m in [1, 2, 5] {
            if let Some(v) = p.checked_mul(m) {
                if v >= n {
                    return v;
                }
            }
        }
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => return u32::MAX,
        }
    }
}

fn label(ms: u64, daily: bool) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) else {
        return String::new();
    };
    if daily {
        format!("{} {}", t.day(), &format!("{}", t.month())[..3])
    } else {
        format!("{:02}:00", t.hour())
    }
}

/// The chart, with a title and the totals beside it.
pub fn draw(s: &Series) -> Markup {
    let n = s.received.len().max(1);
    let top = s
        .received
        .iter()
        .chain(s.delivered.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let max = nice_max(top);
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / n as f64;
    let y = |v: u32| TOP + plot_h - plot_h * f64::from(v) / f64::from(max);
    let total_r: u64 = s.received.iter().map(|v| u64::from(*v)).sum();
    let total_d: u64 = s.delivered.iter().map(|v| u64::from(*v)).sum();
    let line: Vec<String> = s
        .delivered
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", LEFT + slot * (i as f64 + 0.5), y(*v)))
        .collect();
    let (bars, line_name) = s.names;
    let aria = format!("{}: {total_r} {bars}, {total_d} {line_name}", s.title);
    html! {
        figure.chart {
            figcaption {
                strong { (s.title) }
                " "
                span.key-received { "■" } " " (bars) " " (total_r)
                " · "
                span.key-delivered { "━" } " " (line_name) " " (total_d)
            }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(aria)
                {
                @for (v, frac) in [(max, 0.0), (max / 2, 0.5), (0, 1.0)] {
                    line.grid x1=(LEFT) x2=(WIDTH - 4.0)
                        y1=(format!("{:.1}", TOP + plot_h * frac))
                        y2=(format!("{:.1}", TOP + plot_h * frac)) {}
                    text.axis x=(LEFT - 6.0) y=(format!("{:.1}", TOP + plot_h * frac + 4.0))
                        text-anchor="end" { (v) }
                }
                @for (i, v) in s.received.iter().enumerate() {
                    @let x = LEFT + slot * i as f64;
                    @let from = s.start_ms + s.step_ms * i as u64;
                    rect.bar x=(format!("{:.1}", x + slot * 0.1)) y=(format!("{:.1}", y(*v)))
                        width=(format!("{:.1}", (slot * 0.8).max(0.5)))
                        height=(format!("{:.1}", TOP + plot_h - y(*v))) {
                        title {
                            (crate::console::pages::when(from)) ": " (v) " " (bars) ", "
                            (s.delivered.get(i).copied().unwrap_or(0)) " " (line_name)
                        }
                    }
                    @if i % s.label_every.max(1) == 0 {
                        text.axis x=(format!("{:.1}", x)) y=(HEIGHT - 6.0) {
                            (label(from, s.daily_labels))
                        }
                    }
                }
                polyline.delivered points=(line.join(" ")) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(4_000), 5_000);
        assert_eq!(nice_max(u32::MAX), u32::MAX);
    }

    #[test]
    fn a_chart_has_a_bar_per_slot_and_says_its_totals() {
        let received = [1, 0, 4];
        let delivered = [1, 0, 3];
        let svg = draw(&Series {
            title: "Last 3 hours",
            start_ms: 0,
            step_ms: 3_600_000,
            received: &received,
            delivered: &delivered,
            names: ("received", "delivered"),
            label_every: 1,
            daily_labels: false,
        })
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("5 received, 4 delivered"), "{svg}");
        assert!(svg.contains("01:00"), "{svg}");
        assert!(!svg.contains("style="), "no inline style under the CSP");
    }
}
