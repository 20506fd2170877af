//! Money as exact decimals: parsed from strings like `"89.99"` or from JSON numbers written the
//! same way, never through binary floating point, and rendered with a dot and no exponent.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest amount text accepted (digits and dot). Keeps hostile values from reaching the decimal
/// parser and fits inside rust_decimal's 28 significant digits.
const MAX_LEN: usize = 28;

/// A non-negative amount of money, exact to the digit it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(Decimal);

/// Why a text is not an amount of money; the message is what a dead letter shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("empty amount")]
    Empty,
    #[error("amount {0:?} is too long (at most {MAX_LEN} characters)")]
    TooLong(String),
    #[error(
        "amount {0:?} must be written with digits and a dot as decimal separator, like \"49.99\" (no comma, exponent, sign or thousands separator)"
    )]
    Format(String),
    #[error("amount {0:?} is out of range")]
    Range(String),
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// Two fraction digits, rounded half-up: `89.99`, `125.50`, `30.00`. The form most partner
    /// documents show (Powerspace `ov`, Awin amounts).
    pub fn fixed2(self) -> String {
        self.rounded(2).to_string()
    }

    /// Rounded half-up to `dp` fraction digits, and written with exactly that many when
    /// the digits fit (rust_decimal keeps at most 28).
    fn rounded(self, dp: u32) -> Decimal {
        let mut d = self
            .0
            .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        d.rescale(dp);
        d
    }

    /// `dp` fraction digits, rounded half-up; `None` when the amount has too many digits to
    /// be written so (over 28 in all).
    pub fn fixed(self, dp: u32) -> Option<String> {
        let d = self.rounded(dp);
        (d.scale() == dp).then(|| d.to_string())
    }

    /// The amount in minor units of a currency with `dp` fraction digits (cents for EUR,
    /// yen for JPY), rounded half-up: `89.99` is `8999`. `None` when out of range.
    pub fn minor(self, dp: u32) -> Option<String> {
        let d = self
            .0
            .round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let scale = Decimal::from(10u64.checked_pow(dp)?);
        d.checked_mul(scale)
            .map(|m| m.trunc().normalize().to_string())
    }

    /// The exact amount, without trailing zeros: `125.50` is `125.5`.
    pub fn plain(self) -> String {
        self.0.normalize().to_string()
    }

    /// Rounded half-up to two fraction digits, without trailing zeros: `30`, `49.9`, `49.99`
    /// (HOQU's examples write `price=30`).
    pub fn plain2(self) -> String {
        self.0
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .normalize()
            .to_string()
    }

    /// Subtracts, or `None` when the result would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        let d = self.0.checked_sub(other.0)?;
        (!d.is_sign_negative() || d.is_zero()).then_some(Money(d))
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(MoneyError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(MoneyError::TooLong(s.chars().take(MAX_LEN + 4).collect()));
        }
        // Grammar: digits, optionally a dot followed by digits. Anything else (",", "e", "NaN",
        // "+", "-", " ", "1.", ".5") is refused rather than guessed at.
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(MoneyError::Format(s.to_owned()));
        }
        Decimal::from_str_exact(s)
            .map(Money)
            .map_err(|_| MoneyError::Range(s.to_owned()))
    }
}

impl fmt::Display for Money {
    /// Plain decimal with a dot, the scale it was written with (`125.50` stays `125.50`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts a string or a JSON number; both are read from their exact text (serde_json's
    /// `arbitrary_precision` keeps the digits of a number as written).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s.parse().map_err(D::Error::custom),
            serde_json::Value::Number(n) => n.to_string().parse().map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected an amount as a string like \"49.99\", found {}",
                super::json_kind(&other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimals_and_keeps_their_scale() {
        for s in ["0", "89.99", "125.50", "4999", "0.001", "1234567890.12"] {
            assert_eq!(s.parse::<Money>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_what_is_not_a_plain_decimal() {
        for s in [
            "12,50", "1e3", "1E3", "NaN", "inf", "-1", "+1", " 1", "1 ", "1.", ".5", "1,000.00",
            "0x10", "１２", "",
        ] {
            assert!(s.parse::<Money>().is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn refuses_absurdly_long_values() {
        let long = "9".repeat(40);
        assert!(matches!(long.parse::<Money>(), Err(MoneyError::TooLong(_))));
    }

    #[test]
    fn json_numbers_are_read_exactly() {
        let m: Money = serde_json::from_str("89.99").unwrap();
        assert_eq!(m.to_string(), "89.99");
        let m: Money = serde_json::from_str("0.1").unwrap();
        assert_eq!(m.to_string(), "0.1");
        assert!(serde_json::from_str::<Money>("1e3").is_err());
        assert!(serde_json::from_str::<Money>("-5").is_err());
        assert!(serde_json::from_str::<Money>("true").is_err());
    }

    #[test]
    fn partner_forms_round_half_up() {
        let m = |s: &str| s.parse::<Money>().unwrap();
        assert_eq!(m("89.99").fixed2(), "89.99");
        assert_eq!(m("125.5").fixed2(), "125.50");
        assert_eq!(m("30").fixed2(), "30.00");
        assert_eq!(m("0.005").fixed2(), "0.01");
        assert_eq!(m("2.675").fixed2(), "2.68");
        assert_eq!(m("2.674999").fixed2(), "2.67");
        assert_eq!(m("30.00").plain2(), "30");
        assert_eq!(m("49.90").plain2(), "49.9");
        assert_eq!(m("49.995").plain2(), "50");
        assert_eq!(m("1000000").plain2(), "1000000");
        assert_eq!(m("0").fixed2(), "0.00");
    }

    #[test]
    fn fixed_minor_and_plain_forms() {
        let m = |s: &str| s.parse::<Money>().unwrap();
        assert_eq!(m("89.99").fixed(0).unwrap(), "90");
        assert_eq!(m("89.9").fixed(3).unwrap(), "89.900");
        assert_eq!(m("89.99").minor(2).unwrap(), "8999");
        assert_eq!(m("89.995").minor(2).unwrap(), "9000");
        assert_eq!(m("1500").minor(0).unwrap(), "1500");
        assert_eq!(m("1.2345").minor(3).unwrap(), "1235");
        assert_eq!(m("0").minor(2).unwrap(), "0");
        assert_eq!(m("125.50").plain(), "125.5");
        assert_eq!(m("30.00").plain(), "30");
        let huge = m(&"9".repeat(28));
        assert_eq!(huge.fixed(2), None);
        assert_eq!(huge.minor(2), None);
    }

    #[test]
    fn subtraction_never_goes_negative() {
        let a: Money = "10.00".parse().unwrap();
        let b: Money = "4.99".parse().unwrap();
        assert_eq!(a.checked_sub(b).unwrap().to_string(), "5.01");
        assert!(b.checked_sub(a).is_none());
    }
}
