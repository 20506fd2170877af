//! The partner calls of one attempt: up to `tries` calls in a row, in-process, while the
//! answer is worth retrying and a short pause is enough (longer waits belong to the broker's
//! retry tiers). Before each call the delivery waits for a concurrency slot and the rate
//! limit; after those waits, right before the call, it asks again everything that may have
//! changed meanwhile: whether the destination was paused, whether its claim is still held (a
//! delivery whose claim was lost is never sent), whether the circuit lets a call through, and
//! the time the request carries (a signature's timestamp, the `now` macro), which is made
//! there.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;

use super::Relay;
use super::destination::Destination;
use super::outcome::{Attempted, Call, NotNow, Outcome, Taken, Wait, after, paused, wait};
use crate::contract::classify::{CallResult, Verdict};
use crate::contract::event::ConversionEvent;
use crate::contract::partner::Request;
use crate::relay::deadletter::LastAnswer;
use crate::relay::delivery::{AttemptRecord, Delivery};
use crate::shared::circuit::Admit;
use crate::shared::{Held, HoldError};

/// What a claim must still have left when a call starts: the call itself, and the time to
/// record its result.
const RECORD_MARGIN: Duration = Duration::from_secs(2);

/// What the calls of one attempt came to.
pub(super) struct Report {
    pub end: End,
    /// Partner calls made.
    pub tries: u32,
    pub history: Vec<AttemptRecord>,
    pub last: LastAnswer,
    /// Every call, for the journal.
    pub calls: Vec<Call>,
    /// The last request sent, when it was made again for its try (it carries the time).
    pub sent: Option<Request>,
}

pub(super) enum End {
    /// The partner answered the last call (or it failed on the way); what that means.
    Answered(Verdict),
    /// The circuit was open when the first call was due: nothing was sent.
    CircuitOpen(Duration),
    /// The claim was lost before a call could go out: nothing more was sent.
    ClaimLost,
    /// The store could not confirm the claim before a call: nothing more was sent.
    StoreUnavailable,
    /// The destination was paused while the attempt waited for its turn: nothing more sent.
    Paused,
    /// The HTTP client refused to build the request: nothing was sent, and the same request
    /// never will be.
    Unsendable(String),
    /// The request could not be made again for its try: nothing was sent.
    Unrenderable(String),
}

impl Report {
    /// Takes in a call's answer: counted, kept as the last, added to the history. Returns what
    /// it means.
    fn answered(
        &mut self,
        dest: &Destination,
        answer: crate::relay::dispatch::Answer,
        (at, latency_ms): (chrono::DateTime<Utc>, f64),
    ) -> Verdict {
        self.tries += 1;
        let kind = dest.config.kind;
        let verdict = answer.result.classify(&|s| kind.explain_status(s));
        let error_class = match &answer.result {
            CallResult::Response { .. } => None,
            other => Some(other.status_class()),
        };
        self.last = LastAnswer::of(&answer.result, dest.config.timeout_ms, answer.snippet);
        self.calls.push(Call {
            at,
            attempt: self.tries,
            status: self.last.status,
            error_class,
            latency_ms,
            snippet: self.last.snippet.clone(),
        });
        self.history.push(AttemptRecord {
            at,
            result: answer.result.status_class().into(),
            status: self.last.status,
            error: self.last.error.clone(),
        });
        verdict
    }
}

impl Relay {
    /// Calls the partner (with the in-process tries on the event's `first` pass), each call
    /// behind its waits and checks, and decides: delivered, another try later, or a dead
    /// letter. Gives the last request sent too, when it was made again for its try.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_partner(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        delivery: Delivery,
        first: bool,
        request: &Request,
        holds: &[&Held],
        taken: &Taken<'_>,
    ) -> (Attempted, Option<Request>) {
        let before = delivery.attempts;
        let (outcome, mut calls, sent) = self
            .calls(dest, event, delivery, first, request, holds, taken)
            .await;
        for c in &mut calls {
            c.attempt += before;
        }
        let attempted = Attempted {
            outcome,
            request: None,
            calls,
        };
        (attempted, sent)
    }

    /// [`Relay::call_partner`]'s calls and decision, with the calls made.
    #[allow(clippy::too_many_arguments)]
    async fn calls(
        &self,
        dest: &Destination,
        event: &ConversionEvent,
        mut delivery: Delivery,
        first: bool,
        request: &Request,
        holds: &[&Held],
        taken: &Taken<'_>,
    ) -> (Outcome, Vec<Call>, Option<Request>) {
        let config = &dest.config;
        let tries = if first {
            config.retry.immediate_attempts
        } else {
            1
        };
        let report = self
            .tries(dest, request, event, tries, holds, taken.at)
            .await;
        delivery.attempts += report.tries;
        delivery.record(report.history);
        let (calls, sent) = (report.calls, report.sent);
        let request = sent.as_ref().unwrap_or(request);
        let decide = |not_now, delivery, last: Option<&LastAnswer>| {
            after(
                not_now,
                delivery,
                config,
                request,
                last,
                taken,
                (Utc::now(), rand::random()),
            )
        };
        let dead = |detail: String, delivery: &Delivery| {
            let reason = crate::contract::reason::Reason::RenderError;
            Outcome::dead(reason, detail, delivery, Some(request), None, taken)
        };
        let outcome = match report.end {
            End::Answered(verdict) => match Option::<NotNow>::from(verdict) {
                None => Outcome::Delivered {
                    attempts: delivery.attempts,
                    occurred_at: event.occurred_at,
                },
                Some(not_now) => decide(not_now, delivery, Some(&report.last)),
            },
            End::CircuitOpen(open_for) => decide(NotNow::CircuitOpen(open_for), delivery, None),
            End::ClaimLost => wait(delivery, Wait::ClaimLost, config, Utc::now()),
            End::StoreUnavailable => wait(delivery, Wait::StoreUnavailable, config, Utc::now()),
            End::Paused => paused(delivery, config, Utc::now()),
            End::Unsendable(why) => dead(
                format!("the HTTP client cannot send this request: {why}"),
                &delivery,
            ),
            End::Unrenderable(why) => dead(why, &delivery),
        };
        (outcome, calls, sent)
    }

    /// Calls the partner up to `tries` times in a row while the answer is retryable, pausing
    /// with exponential backoff and jitter between calls. Each call first waits for a
    /// concurrency slot; then, unless the destination was paused or its circuit is open, for
    /// the rate limit's turn; then, right before it goes, a request that carries the time is
    /// made again, the destination must still not be paused, every one of `holds` (the
    /// delivery's claim, the conversion's lock) must still be held, and the circuit must let
    /// it through. Reports every call to the circuit before its slot is let go, and the time
    /// from `taken` (the message coming off its queue) to the first call.
    async fn tries(
        &self,
        dest: &Destination,
        req: &Request,
        event: &ConversionEvent,
        tries: u32,
        holds: &[&Held],
        taken: Instant,
    ) -> Report {
        let policy = &dest.config.retry;
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(policy.immediate_delay_ms))
            .with_max_delay(policy.pause_cap())
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(tries.saturating_sub(1) as usize)
            .build();
        let mut report = Report {
            end: End::ClaimLost,
            tries: 0,
            history: Vec::new(),
            last: LastAnswer::default(),
            calls: Vec::new(),
            sent: None,
        };
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

    /// One call, once its waits are over: the request made again if it carries the time, the
    /// checks right before it ([`Relay::ready_to_call`]), the call, and its answer told to
    /// the circuit (before the caller lets its slot go). The answer's verdict, and whether
    /// the call was the probe; or why no call went.
    async fn call(
        &self,
        dest: &Destination,
        (req, event, timed): (&Request, &ConversionEvent, bool),
        holds: &[&Held],
        last: &mut Option<Verdict>,
        taken: Instant,
        report: &mut Report,
    ) -> Result<(Verdict, bool), End> {
        let event_id = event.event_id.as_str();
        let remade = match timed {
            true => Some(
                dest.config
                    .partner
                    .render_at(dest.name(), event, Utc::now())
                    .map_err(|e| End::Unrenderable(e.to_string()))?,
            ),
            false => None,
        };
        let request = remade.as_ref().unwrap_or(req);
        let probe = self.ready_to_call(dest, holds, event_id, last).await?;
        let at = Utc::now();
        let first = (report.tries == 0).then_some(taken);
        let (answer, latency_ms) = self
            .send(dest, request, event_id, report.tries + 1, first)
            .await;
        if let CallResult::Unsendable(why) = &answer.result {
            // Not the partner's doing, and nothing was sent: the circuit hears of it only when
            // the call was its probe, which is given back as a failure so that another goes.
            if probe {
                dest.report(false, true).await;
            }
            return Err(End::Unsendable(why.clone()));
        }
        if remade.is_some() {
            report.sent = remade;
        }
        let verdict = report.answered(dest, answer, (at, latency_ms));
        dest.report(!matches!(verdict, Verdict::Retry { .. }), probe)
            .await;
        Ok((verdict, probe))
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

    /// What is asked again right before each call, after the waits for a slot and the rate
    /// limit: a pause that came meanwhile, the holds, and the circuit (asked last, as it may
    /// hand this call the probe). `Ok(probe)`: the call may go, and whether it is the
    /// half-open circuit's probe, whose answer decides for the others.
    async fn ready_to_call(
        &self,
        dest: &Destination,
        holds: &[&Held],
        event_id: &str,
        last: &mut Option<Verdict>,
    ) -> Result<bool, End> {
        if self.paused.is_paused(dest.name()) {
            return Err(End::Paused);
        }
        self.still_held(dest, holds, event_id).await?;
        match dest.admit().await {
            Admit::Call => Ok(false),
            Admit::Probe => Ok(true),
            Admit::Wait(open_for) => Err(circuit_open(open_for, last.take())),
        }
    }

    /// Whether every hold is still the attempt's own, for long enough to cover a call.
    async fn still_held(
        &self,
        dest: &Destination,
        holds: &[&Held],
        event_id: &str,
    ) -> Result<(), End> {
        let need = dest.config.timeout() + RECORD_MARGIN;
        let held = match holds {
            [one] => one.ensure(need).await,
            many => futures_util::future::try_join_all(many.iter().map(|h| h.ensure(need)))
                .await
                .map(|_| ()),
        };
        held.map_err(|e| match e {
            HoldError::Lost => {
                tracing::warn!(message = "claim lost before the call; not sent", destination = dest.name(), event_id);
                End::ClaimLost
            }
            HoldError::Store(e) => {
                tracing::error!(message = "store unavailable; the delivery waits", destination = dest.name(), error = %self.shown(&e));
                End::StoreUnavailable
            }
        })
    }

    /// One call: sent, timed, counted and logged.
    async fn send(
        &self,
        dest: &Destination,
        req: &Request,
        event_id: &str,
        attempt: u32,
        taken: Option<Instant>,
    ) -> (crate::relay::dispatch::Answer, f64) {
        let series = &dest.series;
        let in_flight = InFlight::new(series.in_flight.clone());
        let start = Instant::now();
        if let Some(taken) = taken {
            series.dispatch_delay.observe((start - taken).as_secs_f64());
        }
        let answer = self.client.send(req, dest.config.timeout()).await;
        let elapsed = start.elapsed();
        drop(in_flight);
        series.request_duration.observe(elapsed.as_secs_f64());
        if let Some(c) = series.requests.get(answer.result.status_class()) {
            c.inc();
        }
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let destination = dest.name();
        match &answer.result {
            CallResult::Response { status, .. } if (200..300).contains(status) => {
                tracing::info!(
                    message = "partner call",
                    destination,
                    event_id,
                    attempt,
                    status,
                    latency_ms
                )
            }
            CallResult::Response { status, .. } => {
                tracing::warn!(
                    message = "partner call failed",
                    destination,
                    event_id,
                    attempt,
                    status,
                    latency_ms
                )
            }
            CallResult::Timeout | CallResult::ConnectError(_) | CallResult::Unsendable(_) => {
                tracing::warn!(
                    message = "partner call failed",
                    destination,
                    event_id,
                    attempt,
                    status_class = answer.result.status_class(),
                    latency_ms
                )
            }
        }
        (answer, latency_ms)
    }
}

/// Why an attempt stops at an open circuit: the answer to its previous call when it made one
/// (a call failed, and the circuit opened before the next: the failure stands), or the
/// circuit itself.
fn circuit_open(open_for: Duration, last: Option<Verdict>) -> End {
    match last {
        Some(verdict) => End::Answered(verdict),
        None => End::CircuitOpen(open_for),
    }
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

/// Counts a call in flight until dropped, also when its task is cancelled mid-call.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(g: prometheus::IntGauge) -> InFlight {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
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
