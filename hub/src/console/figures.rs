//! The figures behind the overview and the practice pages, made by one read of the last
//! seven days of messages ([`crate::store::Store::messages_since`]) and kept for a while:
//! on a million messages that read takes seconds, a page must take milliseconds. A page asks
//! [`FigureCache::get`]: fresh figures are handed out as they are, stale ones too while a
//! new read runs in the background, and only the very first page waits for a read.
//!
//! What is counted (pure, in [`Figures::add`], so tests can feed it records):
//! - received: messages by the hour they arrived; delivered: current deliveries by the hour
//!   the transport took them (`sent`);
//! - the 24-hour discharge standard: per sender, of the discharge documents (discharge
//!   summary, emergency care and mental health discharge) whose day has passed or which were
//!   filed, the share not `accepted` within 24 hours of receipt;
//! - per practice (recipient), over the last 24 hours of receipts: documents, the share of
//!   those handed over that the practice answered (accepted or rejected), the median time
//!   from hand-over to `accepted`, and what is `overdue`, `failed` or `rejected` now.

use crate::hub::Hub;
use crate::store::StoreError;
use crate::track::{DeliveryRecord, DeliveryState, MessageRecord};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// Messages read between two returns of freed memory to the system (see [`Figures::read`]).
const TRIM_EVERY_MESSAGES: u64 = 8192;
/// Hourly slots over seven days.
pub const SLOTS: usize = 7 * 24;

/// One sender against the 24-hour discharge standard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderFigures {
    pub ods: String,
    /// Documents received in the window.
    pub documents: u64,
    /// Discharge deliveries the standard can judge (filed, or a day old).
    pub judged: u64,
    /// Of those, not accepted within 24 hours.
    pub late: u64,
}

impl SenderFigures {
    /// Percentage late, when anything could be judged.
    pub fn late_percent(&self) -> Option<f64> {
        (self.judged > 0).then(|| 100.0 * self.late as f64 / self.judged as f64)
    }
}

/// One practice (recipient).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PracticeFigures {
    pub ods: String,
    /// Deliveries to it of documents received in the last 24 hours.
    pub day_documents: u64,
    /// Of those, handed to the transport.
    pub day_handed_over: u64,
    /// Of those, answered (accepted or rejected).
    pub day_answered: u64,
    pub day_accepted: u64,
    /// Median hand-over → accepted, in ms, over the last 24 hours.
    pub median_accept_ms: Option<u64>,
    /// Current deliveries in these states, over the seven days.
    pub overdue: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Seven calendar days (UTC, today last): documents and accepted, by day of receipt.
    pub daily_documents: [u32; 7],
    pub daily_accepted: [u32; 7],
    /// The last time it accepted anything in the window.
    pub last_accepted_ms: Option<u64>,
    pub(super) accept_times: Vec<u64>,
}

impl PracticeFigures {
    /// The share of what was handed over that the practice answered, in percent.
    pub fn ack_rate(&self) -> Option<f64> {
        (self.day_handed_over > 0)
            .then(|| 100.0 * self.day_answered as f64 / self.day_handed_over as f64)
    }

    /// How much it needs looking at: unanswered share, then overdue.
    pub fn concern(&self) -> (u64, u64) {
        let unanswered = match self.ack_rate() {
            Some(r) => (1000.0 - r * 10.0) as u64,
            None => 0,
        };
        (unanswered, self.overdue + self.failed + self.rejected)
    }
}

/// The figures of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// When the window ends (the read started).
    pub now_ms: u64,
    /// Start of the first hourly slot (an hour boundary).
    pub first_slot_ms: u64,
    pub received: Vec<u32>,
    pub delivered: Vec<u32>,
    pub messages: u64,
    pub senders: BTreeMap<String, SenderFigures>,
    pub practices: BTreeMap<String, PracticeFigures>,
    /// How long the read took.
    pub took: Duration,
}

fn is_discharge(t: edt_transforms::DocumentType) -> bool {
    use edt_transforms::DocumentType as T;
    matches!(
        t,
        T::DischargeSummary | T::EmergencyCareDischarge | T::MentalHealthDischarge
    )
}

impl Figures {
    /// Empty figures for seven days up to `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        let first_slot_ms = (now_ms / HOUR_MS + 1).saturating_sub(SLOTS as u64) * HOUR_MS;
        Self {
            now_ms,
            first_slot_ms,
            received: vec![0; SLOTS],
            delivered: vec![0; SLOTS],
            messages: 0,
            senders: BTreeMap::new(),
            practices: BTreeMap::new(),
            took: Duration::ZERO,
        }
    }

    /// Where the window starts.
    pub fn since_ms(&self) -> u64 {
        self.first_slot_ms
    }

    fn slot(&self, ms: u64) -> Option<usize> {
        let i = ms.checked_sub(self.first_slot_ms)? / HOUR_MS;
        (i < SLOTS as u64).then_some(i as usize)
    }

    /// Start of the first of the seven calendar days (UTC) that end with today.
    pub fn first_day_ms(&self) -> u64 {
        (self.now_ms / DAY_MS).saturating_sub(6) * DAY_MS
    }

    fn day(&self, ms: u64) -> Option<usize> {
        let i = ms.checked_sub(self.first_day_ms())? / DAY_MS;
        (i < 7).then_some(i as usize)
    }

    /// Counts one message and its deliveries.
    pub fn add(&mut self, m: &MessageRecord, all: &[DeliveryRecord]) {
        if m.received_ms < self.first_slot_ms {
            return;
        }
        self.messages += 1;
        if let Some(i) = self.slot(m.received_ms) {
            self.received[i] += 1;
        }
        let last_day = m.received_ms + DAY_MS > self.now_ms;
        let (mut judged, mut late) = (0, 0);
        let day = self.day(m.received_ms);
        for d in all.iter().filter(|d| d.is_current()) {
            if let Some(i) = d.sent_ms.and_then(|s| self.slot(s)) {
                self.delivered[i] += 1;
            }
            let accepted_at = (d.state == DeliveryState::Accepted).then_some(d.updated_ms);
            if is_discharge(m.document_type) && d.state != DeliveryState::Cancelled {
                let on_time = accepted_at.is_some_and(|a| a <= m.received_ms + DAY_MS);
                if on_time || !last_day {
                    judged += 1;
                    late += u64::from(!on_time);
                }
            }
            let p = self
                .practices
                .entry(d.recipient_ods.clone())
                .or_insert_with(|| PracticeFigures {
                    ods: d.recipient_ods.clone(),
                    ..Default::default()
                });
            match d.state {
                DeliveryState::Overdue => p.overdue += 1,
                DeliveryState::Failed => p.failed += 1,
                DeliveryState::Rejected => p.rejected += 1,
                _ => {}
            }
            if let Some(day) = day {
                p.daily_documents[day] += 1;
                p.daily_accepted[day] += u32::from(accepted_at.is_some());
            }
            if let Some(a) = accepted_at {
                p.last_accepted_ms = p.last_accepted_ms.max(Some(a));
            }
            if last_day {
                p.day_documents += 1;
                if let Some(sent) = d.sent_ms {
                    p.day_handed_over += 1;
                    let answered =
                        matches!(d.state, DeliveryState::Accepted | DeliveryState::Rejected);
                    p.day_answered += u64::from(answered);
                    if let Some(a) = accepted_at {
                        p.day_accepted += 1;
                        p.accept_times.push(a.saturating_sub(sent));
                    }
                }
            }
        }
        let sender = self
            .senders
            .entry(m.sender_ods.clone())
            .or_insert_with(|| SenderFigures {
                ods: m.sender_ods.clone(),
                ..Default::default()
            });
        sender.documents += 1;
        sender.judged += judged;
        sender.late += late;
    }

    /// Finishes the medians.
    pub fn finish(&mut self) {
        for p in self.practices.values_mut() {
            let t = &mut p.accept_times;
            if !t.is_empty() {
                let mid = t.len() / 2;
                let (_, m, _) = t.select_nth_unstable(mid);
                p.median_accept_ms = Some(*m);
            }
            *t = Vec::new();
        }
    }

    /// Reads the window from the store.
    pub fn read(hub: &Hub) -> Result<Self, StoreError> {
        let started = Instant::now();
        let mut f = Figures::new(crate::track::now_ms());
        hub.store.messages_since(f.since_ms(), &mut |m, all| {
            f.add(&m, &all);
            // The read pages the database's nodes in and out faster than the server's timer
            // gives freed memory back: give it back as the read goes, so that a week of a
            // busy hub does not double the server's memory while it is read.
            if f.messages.is_multiple_of(TRIM_EVERY_MESSAGES) {
                crate::memory::trim();
            }
            true
        })?;
        f.finish();
        f.took = started.elapsed();
        Ok(f)
    }

    /// Hourly slots of the last `hours` (at most seven days): (first slot's start, received,
    /// delivered).
    pub fn last_hours(&self, hours: usize) -> (u64, &[u32], &[u32]) {
        let from = SLOTS - hours.min(SLOTS);
        (
            self.first_slot_ms + from as u64 * HOUR_MS,
            &self.received[from..],
            &self.delivered[from..],
        )
    }
}

/// The last figures read, and a read under way.
type Held = Arc<Mutex<(Option<Arc<Figures>>, bool)>>;

#[derive(Default)]
pub struct FigureCache {
    state: Held,
}

impl FigureCache {
    /// How long figures stay fresh: long enough that reading them costs little of the
    /// machine (thirty times the read), never under 5 s or over 2 min.
    fn fresh_for(f: &Figures) -> Duration {
        (f.took * 30).clamp(Duration::from_secs(5), Duration::from_secs(120))
    }

    /// Figures no older than their freshness, or the last ones while new ones are read.
    pub async fn get(&self, hub: &Arc<Hub>) -> Result<Arc<Figures>, StoreError> {
        let (last, reading) = {
            let s = self.state.lock().expect("figures lock");
            (s.0.clone(), s.1)
        };
        if let Some(f) = &last {
            let age = crate::track::now_ms().saturating_sub(f.now_ms);
            if Duration::from_millis(age) < Self::fresh_for(f) || reading {
                return Ok(f.clone());
            }
        }
        if let Some(last) = last {
            // Stale: hand out what there is, read anew in the background.
            self.state.lock().expect("figures lock").1 = true;
            let hub = hub.clone();
            let held = self.state.clone();
            tokio::spawn(async move {
                let read = tokio::task::spawn_blocking({
                    let hub = hub.clone();
                    move || Figures::read(&hub)
                })
                .await;
                let mut s = held.lock().expect("figures lock");
                s.1 = false;
                match read {
                    Ok(Ok(f)) => s.0 = Some(Arc::new(f)),
                    Ok(Err(e)) => tracing::error!(error = %e, "console figures not read"),
                    Err(e) => tracing::error!(error = %e, "console figures not read"),
                }
            });
            return Ok(last);
        }
        let hub2 = hub.clone();
        let f = tokio::task::spawn_blocking(move || Figures::read(&hub2))
            .await
            .map_err(|e| StoreError::Engine(e.to_string()))??;
        let f = Arc::new(f);
        self.state.lock().expect("figures lock").0 = Some(f.clone());
        Ok(f)
    }

    /// Forgets the figures (after an action changed them).
    pub fn clear(&self) {
        let mut s = self.state.lock().expect("figures lock");
        if !s.1 {
            s.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::sample;

    #[test]
    fn standard_practices_and_slots_count_what_they_say() {
        let now = 100 * DAY_MS + 30 * 60_000;
        let mut f = Figures::new(now);
        let mut msg = |ago_ms: u64, state: DeliveryState, accept_after: u64| {
            let mut n = sample("RX1", "L", &["A81001"]);
            n.message.received_ms = now - ago_ms;
            let d = &mut n.deliveries[0];
            d.state = state;
            d.sent_ms = Some(now - ago_ms + 1000);
            d.updated_ms = now - ago_ms + accept_after;
            f.add(&n.message, &n.deliveries);
        };
        // Two days ago: one filed in an hour, one filed after 30 hours, one never filed.
        msg(2 * DAY_MS, DeliveryState::Accepted, HOUR_MS);
        msg(2 * DAY_MS, DeliveryState::Accepted, 30 * HOUR_MS);
        msg(2 * DAY_MS, DeliveryState::Overdue, HOUR_MS);
        // An hour ago: one filed after 10 minutes, one sent and waiting (not judged yet).
        msg(HOUR_MS, DeliveryState::Accepted, 10 * 60_000 + 1000);
        msg(HOUR_MS, DeliveryState::Sent, 1000);
        // Older than the window: not counted.
        msg(8 * DAY_MS, DeliveryState::Failed, 0);
        f.finish();
        assert_eq!(f.messages, 5);
        assert_eq!(f.received.iter().sum::<u32>(), 5);
        assert_eq!(f.delivered.iter().sum::<u32>(), 5);
        let s = &f.senders["RX1"];
        assert_eq!((s.documents, s.judged, s.late), (5, 4, 2));
        assert_eq!(s.late_percent(), Some(50.0));
        let p = &f.practices["A81001"];
        assert_eq!(
            (p.day_documents, p.day_handed_over, p.day_answered),
            (2, 2, 1)
        );
        assert_eq!(p.ack_rate(), Some(50.0));
        assert_eq!(p.median_accept_ms, Some(10 * 60_000));
        assert_eq!((p.overdue, p.failed), (1, 0));
        assert_eq!(p.daily_documents.iter().sum::<u32>(), 5);
        let (start, r, _) = f.last_hours(24);
        assert_eq!(r.len(), 24);
        assert_eq!(start % HOUR_MS, 0);
        assert_eq!(r.iter().sum::<u32>(), 2);
    }
}
