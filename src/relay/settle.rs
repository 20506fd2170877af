//! Settles consumed messages on their channel, in as few frames as is safe.
//!
//! Every message taken from the broker is registered here by its delivery tag before it is
//! processed, and reported when processing has decided its fate. Acknowledgements for a run
//! of messages with nothing unsettled below them go out as one `multiple` ack, which saves the
//! broker and this process a frame, a wake-up and a write per message. A message whose
//! processing is slow does not hold the others back for long: acknowledgements waiting behind
//! it go out one by one once `HOLD` has passed or enough of them have queued up, so they do
//! not keep prefetch slots busy.
//!
//! A message that is abandoned (the session is ending) or whose task never reports stays
//! unsettled: no `multiple` ack ever covers it, and the broker redelivers it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The longest an acknowledgement waits behind an unsettled message before going out alone.
const HOLD: Duration = Duration::from_millis(10);

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Processed: acknowledge it.
    Ack,
    /// Refuse it whole (`basic.reject`): the broker's dead-lettering takes it as it is.
    Refuse,
    /// Leave it unsettled; the broker redelivers it when the channel closes.
    Abandon,
}

enum Note {
    Taken(u64, bool),
    Done(u64, Fate),
}

/// The handle the consuming loop and the processing tasks report through.
#[derive(Clone)]
pub struct Settler {
    notes: mpsc::UnboundedSender<Note>,
}

impl Settler {
    /// Starts settling on `channel`. `on_acked` is called with how many acknowledged messages
    /// were `counted` (registered with `counted = true`) once their acknowledgement is sent.
    /// The returned task ends once every handle is dropped and what could be settled has been.
    pub fn start(
        channel: lapin::Channel,
        prefetch: u16,
        on_acked: impl Fn(u64) + Send + 'static,
    ) -> (Settler, tokio::task::JoinHandle<()>) {
        let (notes, inbox) = mpsc::unbounded_channel();
        let max_held = usize::from(prefetch / 4).max(1);
        let task = tokio::spawn(run(channel, inbox, max_held, on_acked));
        (Settler { notes }, task)
    }

    /// Registers a message before its processing starts.
    pub fn taken(&self, tag: u64, counted: bool) {
        let _ = self.notes.send(Note::Taken(tag, counted));
    }

    /// Reports a message's fate.
    pub fn done(&self, tag: u64, fate: Fate) {
        let _ = self.notes.send(Note::Done(tag, fate));
    }
}

#[derive(Default)]
struct State {
    /// Every tag up to this one has been taken. Tags on a channel count up from 1, but two
    /// consumers share it, so a message can be taken before a lower one still buffered for
    /// the other consumer: no `multiple` ack may reach past the first tag not yet taken.
    taken_through: u64,
    /// Tags taken above a gap.
    taken_ahead: BTreeSet<u64>,
    /// Taken and not yet settled (abandoned ones stay here for good).
    open: BTreeSet<u64>,
    /// Whether each open or ready message counts towards `on_acked`.
    counted: BTreeMap<u64, bool>,
    /// Processed, acknowledgement not sent yet.
    ready: BTreeSet<u64>,
    /// Since when the oldest of `ready` has waited behind an open message.
    held_since: Option<Instant>,
}

/// The frames one round sends.
#[derive(Debug, Default, PartialEq, Eq)]
struct Frames {
    /// One ack covering every ready message up to this tag.
    multiple: Option<u64>,
    /// Acks sent one by one.
    single: Vec<u64>,
    /// Rejections.
    reject: Vec<u64>,
    /// Counted messages these acks settle.
    counted: u64,
}

impl State {
    fn note(&mut self, note: Note) -> Option<u64> {
        match note {
            Note::Taken(tag, counted) => {
                self.open.insert(tag);
                self.counted.insert(tag, counted);
                if tag == self.taken_through + 1 {
                    self.taken_through = tag;
                    while self.taken_ahead.remove(&(self.taken_through + 1)) {
                        self.taken_through += 1;
                    }
                } else if tag > self.taken_through {
                    self.taken_ahead.insert(tag);
                }
                None
            }
            Note::Done(tag, Fate::Ack) => {
                if self.open.remove(&tag) {
                    self.ready.insert(tag);
                }
                None
            }
            Note::Done(tag, Fate::Refuse) => {
                self.counted.remove(&tag);
                self.open.remove(&tag).then_some(tag)
            }
            Note::Done(_, Fate::Abandon) => None,
        }
    }

    /// Decides the acks to send now. `flush`: send every ready one (the channel is closing).
    fn frames(&mut self, now: Instant, max_held: usize, flush: bool) -> Frames {
        let mut out = Frames::default();
        let low = self
            .open
            .first()
            .copied()
            .unwrap_or(u64::MAX)
            .min(self.taken_through + 1);
        // Nothing unsettled or untaken below these: one frame for all of them.
        let held = self.ready.split_off(&low);
        let below = std::mem::replace(&mut self.ready, held);
        if let Some(&last) = below.last() {
            out.multiple = Some(last);
            for tag in &below {
                out.counted += u64::from(self.counted.remove(tag).unwrap_or(false));
            }
        }
        if self.ready.is_empty() {
            self.held_since = None;
        } else {
            let since = *self.held_since.get_or_insert(now);
            if flush || self.ready.len() >= max_held || now - since >= HOLD {
                for tag in std::mem::take(&mut self.ready) {
                    out.counted += u64::from(self.counted.remove(&tag).unwrap_or(false));
                    out.single.push(tag);
                }
                self.held_since = None;
            }
        }
        out
    }
}

async fn run(
    channel: lapin::Channel,
    mut inbox: mpsc::UnboundedReceiver<Note>,
    max_held: usize,
    on_acked: impl Fn(u64),
) {
    let mut state = State::default();
    let mut notes = Vec::with_capacity(256);
    let mut broken = false;
    loop {
        let got = match state.held_since {
            Some(since) => {
                match tokio::time::timeout_at(since + HOLD, inbox.recv_many(&mut notes, 1024)).await
                {
                    Ok(n) => n,
                    Err(_) => usize::MAX,
                }
            }
            None => inbox.recv_many(&mut notes, 1024).await,
        };
        let closed = got == 0;
        let reject: Vec<u64> = notes.drain(..).filter_map(|n| state.note(n)).collect();
        let frames = Frames {
            reject,
            ..state.frames(Instant::now(), max_held, closed)
        };
        if !broken {
            match send(&channel, &frames).await {
                Err(e) => {
                    tracing::warn!(message = "settling failed; the broker will redeliver", error = %e);
                    broken = true;
                }
                Ok(()) if frames.counted > 0 => on_acked(frames.counted),
                Ok(()) => {}
            }
        }
        if closed {
            return;
        }
    }
}

/// One frame to send.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Nack(u64),
    AckUpTo(u64),
    Ack(u64),
}

impl Frames {
    /// The frames in the order they must reach the broker. The rejections first: a
    /// `multiple` ack of the same round may reach past them, and it must find them settled
    /// already, not take them with it.
    fn in_order(&self) -> Vec<Frame> {
        let mut out = Vec::with_capacity(1 + self.single.len() + self.reject.len());
        out.extend(self.reject.iter().map(|&t| Frame::Nack(t)));
        out.extend(self.multiple.map(Frame::AckUpTo));
        out.extend(self.single.iter().map(|&t| Frame::Ack(t)));
        out
    }
}

async fn send(channel: &lapin::Channel, frames: &Frames) -> Result<(), lapin::Error> {
    // A frame is queued when its future is first polled, and `join_all` polls them in
    // order, so they go out in this order.
    let sends = frames.in_order().into_iter().map(|frame| async move {
        match frame {
            Frame::Nack(t) => channel.basic_nack(t, BasicNackOptions::default()).await,
            Frame::AckUpTo(t) => {
                channel
                    .basic_ack(t, BasicAckOptions { multiple: true })
                    .await
            }
            Frame::Ack(t) => channel.basic_ack(t, BasicAckOptions::default()).await,
        }
    });
    for r in futures_util::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(s: &mut State, tags: impl IntoIterator<Item = u64>) {
        for t in tags {
            s.note(Note::Taken(t, true));
        }
    }

    #[test]
    fn a_run_with_nothing_open_below_goes_as_one_frame() {
        let mut s = State::default();
        let now = Instant::now();
        taken(&mut s, 1..=5);
        for t in [2, 1, 3] {
            s.note(Note::Done(t, Fate::Ack));
        }
        let f = s.frames(now, 100, false);
        assert_eq!(f.multiple, Some(3));
        assert!(f.single.is_empty());
        assert_eq!(f.counted, 3);
        // 5 is done but 4 is not: 5 waits.
        s.note(Note::Done(5, Fate::Ack));
        let f = s.frames(now, 100, false);
        assert_eq!(f, Frames::default());
        // Once 4 is done, one frame for 4 and 5.
        s.note(Note::Done(4, Fate::Ack));
        let f = s.frames(now, 100, false);
        assert_eq!((f.multiple, f.counted), (Some(5), 2));
        assert!(s.open.is_empty() && s.ready.is_empty() && s.counted.is_empty());
    }

    #[test]
    fn acks_behind_a_slow_message_go_alone_after_the_hold_or_when_many() {
        let mut s = State::default();
        let now = Instant::now();
        taken(&mut s, 1..=10);
        for t in [2, 3] {
            s.note(Note::Done(t, Fate::Ack));
        }
        assert_eq!(s.frames(now, 4, false), Frames::default());
        let f = s.frames(now + HOLD, 4, false);
        assert_eq!((f.multiple, f.single.clone()), (None, vec![2, 3]));
        // Too many waiting: out at once.
        for t in 4..=7 {
            s.note(Note::Done(t, Fate::Ack));
        }
        let f = s.frames(now + HOLD, 4, false);
        assert_eq!(f.single, vec![4, 5, 6, 7]);
        // 1 finishes: 1 alone by `multiple` (2..7 were acked already and are skipped).
        s.note(Note::Done(1, Fate::Ack));
        let f = s.frames(now + HOLD, 4, false);
        assert_eq!((f.multiple, f.counted), (Some(1), 1));
    }

    #[test]
    fn rejected_and_abandoned_messages_are_never_covered_by_an_ack() {
        let mut s = State::default();
        let now = Instant::now();
        taken(&mut s, 1..=4);
        assert_eq!(s.note(Note::Done(1, Fate::Refuse)), Some(1));
        s.note(Note::Done(2, Fate::Abandon));
        for t in [3, 4] {
            s.note(Note::Done(t, Fate::Ack));
        }
        // 2 stays open: 3 and 4 cannot go by a `multiple` ack.
        assert_eq!(s.frames(now, 100, false).multiple, None);
        let f = s.frames(now, 100, true);
        assert_eq!((f.multiple, f.single, f.counted), (None, vec![3, 4], 2));
        assert!(s.open.contains(&2));
    }

    #[test]
    fn a_rejection_goes_out_before_an_ack_that_reaches_past_it() {
        let mut s = State::default();
        taken(&mut s, [1, 2]);
        let mut f = Frames::default();
        f.reject.extend(s.note(Note::Done(1, Fate::Refuse)));
        s.note(Note::Done(2, Fate::Ack));
        let acks = s.frames(Instant::now(), 100, false);
        (f.multiple, f.single) = (acks.multiple, acks.single);
        assert_eq!(f.in_order(), [Frame::Nack(1), Frame::AckUpTo(2)]);
    }

    #[test]
    fn no_multiple_ack_reaches_past_a_tag_not_taken_yet() {
        let mut s = State::default();
        let now = Instant::now();
        // 2 is still buffered for the other consumer when 1 and 3 are taken and done.
        taken(&mut s, [1, 3]);
        s.note(Note::Done(1, Fate::Ack));
        s.note(Note::Done(3, Fate::Ack));
        let f = s.frames(now, 100, false);
        assert_eq!((f.multiple, f.counted), (Some(1), 1));
        // 3 waits like any ack behind an open message, and never goes by `multiple` over 2.
        let f = s.frames(now + HOLD, 100, false);
        assert_eq!((f.multiple, f.single), (None, vec![3]));
        taken(&mut s, [2, 4]);
        s.note(Note::Done(4, Fate::Ack));
        s.note(Note::Done(2, Fate::Ack));
        let f = s.frames(now + HOLD, 100, false);
        assert_eq!(f.multiple, Some(4));
        // Closing with a tag never taken: what was taken above it goes alone.
        taken(&mut s, [6]);
        s.note(Note::Done(6, Fate::Ack));
        let f = s.frames(now, 100, true);
        assert_eq!((f.multiple, f.single), (None, vec![6]));
    }

    #[test]
    fn uncounted_messages_are_acked_but_not_counted() {
        let mut s = State::default();
        s.note(Note::Taken(1, false));
        s.note(Note::Taken(2, true));
        s.note(Note::Done(1, Fate::Ack));
        s.note(Note::Done(2, Fate::Ack));
        let f = s.frames(Instant::now(), 100, false);
        assert_eq!((f.multiple, f.counted), (Some(2), 1));
    }
}
