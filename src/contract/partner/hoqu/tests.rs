//! Tests of `hoqu`.

use super::*;

#[test]
fn the_status_table_is_case_insensitive_and_closed() {
    assert_eq!(map_status("Paid"), Some("approved"));
    assert_eq!(map_status(" PENDING "), Some("hold"));
    assert_eq!(map_status("cancelled"), Some("rejected"));
    assert_eq!(map_status("refund"), Some("rejected"));
    assert_eq!(map_status("approved"), Some("approved"));
    assert_eq!(map_status("on its way"), None);
    assert_eq!(map_status(""), None);
}

#[test]
fn a_huge_status_wait_neither_panics_nor_turns_negative() {
    let mut partner = super::super::hoqu_partner(
        r#"api_key = "k"
        payout = "percentage"
        action = "lead""#,
    );
    let event = crate::contract::event::parse(
        br#"{"event_id":"e1","type":"order_status","occurred_at":"2026-11-23T09:00:00Z",
            "attribution":{"network":"hoqu","click_id":"c1"},
            "order":{"id":"12345","amount":"30","status":"paid"}}"#,
        1 << 20,
    )
    .unwrap();
    // Past the load-time bound, as a value built another way could be.
    for secs in [10u64.pow(16), i64::MAX as u64, u64::MAX] {
        let super::super::Format::Hoqu(h) = &mut partner.format else {
            unreachable!("a hoqu destination")
        };
        h.status_wait_secs = secs;
        let status = partner.status_of(&event).expect("an update");
        assert!(
            status.wait_for_conversion >= chrono::Duration::days(365 * 1000),
            "{secs}: {:?}",
            status.wait_for_conversion
        );
    }
}
