use super::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn row(hour: &str, outcome: &str, n: u64, latency: (f64, u64)) -> HourCount {
    HourCount {
        hour: t(hour),
        outcome: outcome.into(),
        n,
        latency_ms_sum: latency.0,
        latency_n: latency.1,
    }
}

#[test]
fn hours_are_filled_in_and_rows_outside_them_left_out() {
    let rows = [
        row("2026-11-20T13:00:00Z", "delivered", 9, (90.0, 9)),
        row("2026-11-20T14:00:00Z", "delivered", 3, (30.0, 3)),
        row("2026-11-20T14:00:00Z", "dead_lettered", 1, (50.0, 1)),
        row("2026-11-20T14:00:00Z", "retry_scheduled", 4, (400.0, 4)),
        row("2026-11-20T16:00:00Z", "delivered", 2, (0.0, 0)),
        row("2026-11-20T17:00:00Z", "delivered", 7, (7.0, 7)),
    ];
    let h = hours(&rows, t("2026-11-20T14:00:00Z"), 3);
    assert_eq!(h.len(), 3);
    assert_eq!((h[0].delivered, h[0].dead, h[0].calls), (3, 1, 8));
    assert_eq!(h[0].rate(), Some(75.0));
    assert_eq!(h[0].mean_latency(), Some(60.0));
    assert_eq!(
        h[1],
        Hour {
            start: t("2026-11-20T15:00:00Z"),
            ..Hour::default()
        }
    );
    assert_eq!((h[1].rate(), h[1].mean_latency()), (None, None));
    assert_eq!((h[2].delivered, h[2].mean_latency()), (2, None));
}

#[test]
fn no_data_draws_axes_and_says_so() {
    let h = hours(&[], t("2026-11-20T00:00:00Z"), 24);
    let s = success_rate("ps", &h).into_string();
    let l = latency("ps", &h).into_string();
    assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{s}");
    assert!(s.contains("No final outcomes in these hours"), "{s}");
    assert!(!s.contains("<rect"), "{s}");
    assert!(l.contains("No calls in these hours"), "{l}");
    assert!(!l.contains("<polyline") && !l.contains("<circle"), "{l}");
    assert!(!s.contains("NaN") && !l.contains("NaN") && !l.contains("inf"));
    assert!(
        page("ps", &[], None)
            .into_string()
            .contains("over the last 0 hours")
    );
}

#[test]
fn one_point_is_a_bar_and_a_dot_without_a_line() {
    let rows = [row("2026-11-20T05:00:00Z", "delivered", 4, (200.0, 4))];
    let h = hours(&rows, t("2026-11-20T00:00:00Z"), 24);
    let s = success_rate("ps", &h).into_string();
    assert_eq!(s.matches("<rect").count(), 1, "{s}");
    assert!(s.contains("data-delivered=\"4\" data-dead=\"0\""), "{s}");
    assert!(s.contains("100.0 % (4 delivered, 0 dead-lettered)"), "{s}");
    assert!(s.contains("fill=\"#137333\""), "{s}");
    let l = latency("ps", &h).into_string();
    assert_eq!(l.matches("<circle").count(), 1, "{l}");
    assert!(!l.contains("<polyline"), "{l}");
    assert!(l.contains("data-mean-ms=\"50.0\""), "{l}");
    assert!(l.contains("50 ms mean over 4 calls"), "{l}");
    // The scale's top is a round number above the point: 50 ms of 50.
    assert!(l.contains(">50 ms<"), "{l}");
}

#[test]
fn all_failures_show_as_red_bars_at_zero() {
    let rows = [
        row("2026-11-20T00:00:00Z", "dead_lettered", 5, (5000.0, 5)),
        row("2026-11-20T01:00:00Z", "dead_lettered", 2, (4000.0, 2)),
    ];
    let h = hours(&rows, t("2026-11-20T00:00:00Z"), 2);
    let s = success_rate("ps", &h).into_string();
    assert_eq!(s.matches("fill=\"#b3261e\"").count(), 2, "{s}");
    assert!(s.contains("0.0 % (0 delivered, 5 dead-lettered)"), "{s}");
    // Seen, though no taller than a line.
    assert!(s.contains("height=\"2.0\""), "{s}");
    let l = latency("ps", &h).into_string();
    assert_eq!(l.matches("<polyline").count(), 1, "two hours in a row: {l}");
    assert!(l.contains(">2000 ms<"), "{l}");
}

#[test]
fn a_hostile_name_is_escaped_everywhere() {
    let name = "<script>alert(1)</script>\"'&";
    let rows = [row("2026-11-20T00:00:00Z", "delivered", 1, (1.0, 1))];
    let h = hours(&rows, t("2026-11-20T00:00:00Z"), 1);
    for out in [
        success_rate(name, &h).into_string(),
        latency(name, &h).into_string(),
        page(name, &h, Some(name)).into_string(),
    ] {
        assert!(!out.contains("<script"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }
}

#[test]
fn the_scale_is_a_round_number_above_the_largest() {
    assert_eq!(ceiling(0.0), 1.0);
    assert_eq!(ceiling(f64::NAN), 1.0);
    assert_eq!(ceiling(3.0), 5.0);
    assert_eq!(ceiling(120.0), 200.0);
    assert_eq!(ceiling(1000.0), 1000.0);
    assert_eq!(ceiling(0.3), 0.5);
    assert_eq!(
        (ms(25.0), ms(2.5), ms(0.25)),
        ("25 ms".into(), "2.5 ms".into(), "0.2 ms".into())
    );
}
