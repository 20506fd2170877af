//! The in-process tries of one attempt: up to `tries` calls in a row, while the answer is
//! worth retrying and a short pause is enough (longer waits belong to the broker's retry
//! tiers). Before each call the delivery waits for a concurrency slot and the rate limit.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::Relay;
use super::destination::Destination;
use super::send::{End, Report, circuit_open};
use crate::config::retry::RetryPolicy;
use crate::contract::classify::Verdict;
use crate::contract::event::ConversionEvent;
use crate::contract::partner::Request;
use crate::shared::Held;

impl Relay {
    /// Calls the partner up to `tries` times in a row while the answer is retryable, pausing
    /// with exponential backoff and jitter between calls. Each call first waits for a
    /// concurrency slot; then, unless the destination was paused or its circuit is open, for
    /// the rate limit's turn; then, right before it goes, a request that carries the time is
    /// made again, the destination must still not be paused, every one of `holds` (the
    /// delivery's claim, the conversion's lock) must still be held, and the circuit must let
    /// it through. Reports every call to the circuit before its slot is let go, and the time
    /// from `taken` (the message coming off its queue) to the first call.
    pub(super) async fn tries(
        &self,
        dest: &Destination,
        req: &Request,
        event: &ConversionEvent,
        tries: u32,
        holds: &[&Held],
        taken: Instant,
    ) -> Report {
        let policy = &dest.config.retry;
        let mut pauses = pauses(policy, tries);
        let mut report = Report::new();
        let timed = dest.config.partner.timed();
        let mut last: Option<Verdict> = None;
        loop {
            let slot = dest.concurrency_slot().await;
            // Asked before the rate limit's turn is booked: a delivery that cannot call now
            // takes no turn from those that can.
            if let Err(end) = self.may_call(dest, &mut last) {
                report.end = end;
                return report;
            }
            dest.rate_turn().await;
            let called = self
                .call(
                    dest,
                    (req, event, timed),
                    holds,
                    &mut last,
                    taken,
                    &mut report,
                )
                .await;
            let (verdict, probe) = match called {
                Ok(called) => called,
                Err(end) => {
                    report.end = end;
                    return report;
                }
            };
            drop(slot);
            // A probe is one call: its answer decides for the others.
            let pause = pauses.next().filter(|_| !probe);
            match next_try(&verdict, pause, policy.pause_cap(), dest.circuit_closed()) {
                Some(pause) => {
                    last = Some(verdict);
                    tokio::time::sleep(pause).await;
                }
                None => {
                    report.end = End::Answered(verdict);
                    return report;
                }
            }
        }
    }

    /// What is known without asking anyone, before the rate limit's turn: a pause, or an open
    /// circuit. `last`: the answer to the attempt's previous call, which stands when the
    /// circuit opened during the pause after it.
    fn may_call(&self, dest: &Destination, last: &mut Option<Verdict>) -> Result<(), End> {
        if self.paused.is_paused(dest.name()) {
            return Err(End::Paused);
        }
        match dest.circuit_waits() {
            Some(open_for) => Err(circuit_open(open_for, last.take())),
            None => Ok(()),
        }
    }
}

/// The pauses between an attempt's `tries` calls: exponential from the policy's first
/// in-process pause, with jitter, never over its cap.
fn pauses(policy: &RetryPolicy, tries: u32) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.immediate_delay_ms))
        .with_max_delay(policy.pause_cap())
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(tries.saturating_sub(1) as usize)
        .build()
}

/// After a call, whether to call again in-process and after what pause. Not when the answer
/// is final, when the pauses are used up, when the partner asked for more patience than an
/// in-process pause (`Retry-After` over the cap), or when the circuit just opened: then the
/// rest is the broker's.
fn next_try(
    verdict: &Verdict,
    pause: Option<Duration>,
    pause_cap: Duration,
    circuit_closed: bool,
) -> Option<Duration> {
    match verdict {
        Verdict::Retry { retry_after, .. } if circuit_closed => pause
            .filter(|_| retry_after.is_none_or(|ra| ra <= pause_cap))
            .map(|p| p.max(retry_after.unwrap_or_default())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(after: Option<u64>) -> Verdict {
        Verdict::Retry {
            retry_after: after.map(Duration::from_millis),
            why: "HTTP 503".into(),
        }
    }

    #[test]
    fn in_process_tries_stop_where_the_broker_takes_over() {
        let cap = Duration::from_millis(1600);
        let pause = Some(Duration::from_millis(200));
        assert_eq!(next_try(&retry(None), pause, cap, true), pause);
        assert_eq!(next_try(&Verdict::Delivered, pause, cap, true), None);
        let reject = Verdict::Reject { why: "404".into() };
        assert_eq!(next_try(&reject, pause, cap, true), None);
        assert_eq!(
            next_try(&retry(None), None, cap, true),
            None,
            "pauses used up"
        );
        assert_eq!(
            next_try(&retry(None), pause, cap, false),
            None,
            "circuit open"
        );
        assert_eq!(
            next_try(&retry(Some(800)), pause, cap, true),
            Some(Duration::from_millis(800)),
            "Retry-After within the cap is honoured in-process"
        );
        assert_eq!(
            next_try(&retry(Some(5000)), pause, cap, true),
            None,
            "a longer Retry-After is the broker's"
        );
    }
}
