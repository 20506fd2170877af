//! HOQU's statuses: the document's table from a merchant's order status to hold, approved or
//! rejected ("Соответствие статусов конверсий"), matched case-insensitively and never guessed.

use super::Kind;
use crate::contract::partner::RenderError;

/// The document's status table ("Соответствие статусов конверсий"), matched case-insensitively.
/// The three HOQU statuses map to themselves.
pub const STATUS_TABLE: &[(&str, &[&str])] = &[
    (
        "hold",
        &[
            "hold",
            "shipped",
            "processing",
            "accepted",
            "waiting",
            "open",
            "new",
            "pending",
        ],
    ),
    (
        "approved",
        &[
            "approved",
            "confirmed",
            "confirm",
            "paid",
            "completed",
            "sold",
            "delivered",
        ],
    ),
    (
        "rejected",
        &[
            "rejected",
            "returned",
            "canceled",
            "cancelled",
            "archived",
            "refunded",
            "cancel",
            "archive",
            "refund",
            "spam",
            "error",
            "wrong",
            "test",
            "declined",
        ],
    ),
];

/// HOQU's status for a merchant status, or `None` when the table does not have it.
pub fn map_status(merchant: &str) -> Option<&'static str> {
    let s = merchant.trim().to_lowercase();
    STATUS_TABLE
        .iter()
        .find(|(_, names)| names.contains(&s.as_str()))
        .map(|(status, _)| *status)
}

/// HOQU's status for a conversion or an update: the merchant's status through the document's
/// table, or `hold` for a new conversion without one.
pub(super) fn status_param(
    merchant: Option<&str>,
    conversion: &str,
) -> Result<&'static str, RenderError> {
    match (merchant, conversion) {
        (Some(s), _) => map_status(s).ok_or_else(|| {
            RenderError::Invalid(format!(
                "order.status {s:?} is not in HOQU's status table (hold: {}; approved: {}; rejected: {})",
                STATUS_TABLE[0].1.join(", "),
                STATUS_TABLE[1].1.join(", "),
                STATUS_TABLE[2].1.join(", ")
            ))
        }),
        (None, "status_update") => Err(RenderError::Missing {
            kind: Kind::Hoqu,
            field: "order.status",
        }),
        // "Сообщить платформе о новой конверсии": a new conversion is on hold.
        (None, _) => Ok("hold"),
    }
}
