//! One partner call of an attempt, once its waits for a slot and the rate limit are over:
//! right before the call it asks again everything that may have changed meanwhile: whether
//! the destination was paused, whether its claim is still held (a delivery whose claim was
//! lost is never sent), whether the circuit lets a call through, and the time the request
//! carries (a signature's timestamp, the `now` macro), which is made there. Then the call,
//! timed, counted and logged, and its answer kept in the attempt's [`Report`].

use std::time::{Duration, Instant};

use chrono::Utc;
use opentelemetry::Context;

use super::Relay;
use super::destination::Destination;
use super::outcome::Call;
use crate::contract::classify::{CallResult, Verdict};
use crate::contract::event::ConversionEvent;
use crate::contract::partner::Request;
use crate::relay::deadletter::LastAnswer;
use crate::relay::delivery::AttemptRecord;
use crate::relay::trace;
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
    /// Before the first call: none made yet.
    pub fn new() -> Report {
        Report {
            end: End::ClaimLost,
            tries: 0,
            history: Vec::new(),
            last: LastAnswer::default(),
            calls: Vec::new(),
            sent: None,
        }
    }

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
    /// One call, once its waits are over: the request made again if it carries the time, the
    /// checks right before it ([`Relay::ready_to_call`]), the call, and its answer told to
    /// the circuit (before the caller lets its slot go). The answer's verdict, and whether
    /// the call was the probe; or why no call went.
    pub(super) async fn call(
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
        let traced = self.trace.as_ref().map(|t| {
            let before = Context::current().get::<trace::Before>().map_or(0, |b| b.0);
            let call = (before.saturating_add(attempt), taken.is_none());
            t.attempt_span(&Context::current(), &dest.config, req, call)
        });
        let carrying;
        let req = match &traced {
            Some(cx) if dest.config.send_traceparent => {
                carrying = trace::carrying(req, cx);
                &carrying
            }
            _ => req,
        };
        let in_flight = InFlight::new(series.in_flight.clone());
        let start = Instant::now();
        if let Some(taken) = taken {
            series.dispatch_delay.observe((start - taken).as_secs_f64());
        }
        let answer = self.client.send(req, dest.config.timeout()).await;
        let elapsed = start.elapsed();
        if let Some(cx) = &traced {
            let kind = dest.config.kind;
            let verdict = answer.result.classify(&|s| kind.explain_status(s));
            trace::end_attempt(cx, &answer.result, elapsed, &verdict);
        }
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
pub(super) fn circuit_open(open_for: Duration, last: Option<Verdict>) -> End {
    match last {
        Some(verdict) => End::Answered(verdict),
        None => End::CircuitOpen(open_for),
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
