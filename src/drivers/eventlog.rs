//! An append-only, bounded, timestamped log that steps wait on.
//!
//! Every record gets a sequence number and a device-time stamp. Steps take a [`Mark`]
//! before acting and then wait for a record after it that matches a predicate. The log
//! keeps the most recent `capacity` records in memory (the evidence writer has the full
//! history on disk), so a device that floods the rig cannot make it grow without bound.

use crate::clock::{Clock, DeviceMs};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// A position in a log: records with `seq >= mark.0` are "after" it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Mark(pub u64);

#[derive(Debug, Clone, Serialize)]
pub struct Record<T> {
    pub seq: u64,
    /// Device time in milliseconds.
    pub t: DeviceMs,
    pub value: T,
}

/// Where every record is also handed (e.g. an evidence file writer).
type Sink<T> = Box<dyn FnMut(&Record<T>) + Send>;

pub struct EventLog<T> {
    clock: Clock,
    capacity: usize,
    inner: Mutex<Inner<T>>,
    notify: watch::Sender<u64>,
    /// Records are also handed to this sink (evidence), if set.
    sink: Mutex<Option<Sink<T>>>,
}

struct Inner<T> {
    next_seq: u64,
    records: VecDeque<Record<T>>,
}

impl<T: Clone> EventLog<T> {
    pub fn new(clock: Clock, capacity: usize) -> Self {
        let (notify, _) = watch::channel(0);
        EventLog {
            clock,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                next_seq: 0,
                records: VecDeque::new(),
            }),
            notify,
            sink: Mutex::new(None),
        }
    }

    /// Send every future record to `sink` too (e.g. an evidence file writer).
    pub fn set_sink(&self, sink: impl FnMut(&Record<T>) + Send + 'static) {
        *self.sink.lock().unwrap() = Some(Box::new(sink));
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Append a record stamped now.
    pub fn push(&self, value: T) -> Mark {
        let t = self.clock.now();
        self.push_at(t, value)
    }

    /// Append a record with an explicit device-time stamp (from the device's wire).
    pub fn push_at(&self, t: DeviceMs, value: T) -> Mark {
        let record;
        {
            let mut inner = self.inner.lock().unwrap();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            record = Record { seq, t, value };
            inner.records.push_back(record.clone());
            while inner.records.len() > self.capacity {
                inner.records.pop_front();
            }
        }
        if let Some(sink) = self.sink.lock().unwrap().as_mut() {
            sink(&record);
        }
        self.notify.send_replace(record.seq + 1);
        Mark(record.seq)
    }

    /// A mark after everything logged so far.
    pub fn mark(&self) -> Mark {
        Mark(self.inner.lock().unwrap().next_seq)
    }

    /// A mark at the first record stamped at or after device time `t` (records
    /// already evicted from memory are not reached).
    pub fn mark_since(&self, t: DeviceMs) -> Mark {
        let inner = self.inner.lock().unwrap();
        inner
            .records
            .iter()
            .find(|r| r.t >= t)
            .map(|r| Mark(r.seq))
            .unwrap_or(Mark(inner.next_seq))
    }

    /// Records at or after `mark` still in memory.
    pub fn since(&self, mark: Mark) -> Vec<Record<T>> {
        let inner = self.inner.lock().unwrap();
        inner
            .records
            .iter()
            .filter(|r| r.seq >= mark.0)
            .cloned()
            .collect()
    }

    /// Records logged since `mark` that were already evicted from memory.
    pub fn evicted_since(&self, mark: Mark) -> u64 {
        let inner = self.inner.lock().unwrap();
        let first = inner
            .records
            .front()
            .map(|r| r.seq)
            .unwrap_or(inner.next_seq);
        first.saturating_sub(mark.0)
    }

    /// Wait until a record at or after `mark` satisfies `pred`, or until
    /// `timeout_secs` of device time have passed. Returns the first match.
    pub async fn wait_for(
        &self,
        mark: Mark,
        timeout_secs: f64,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<Record<T>> {
        let deadline = self.clock.deadline(timeout_secs);
        let _w = crate::clock::Waiting::begin();
        let mut rx = self.notify.subscribe();
        let mut from = mark;
        loop {
            {
                let inner = self.inner.lock().unwrap();
                for r in inner.records.iter().filter(|r| r.seq >= from.0) {
                    if pred(&r.value) {
                        return Some(r.clone());
                    }
                }
                from = Mark(inner.next_seq);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::start(1000.0)
    }

    #[tokio::test]
    async fn waits_for_a_later_record_and_ignores_earlier_ones() {
        let log = std::sync::Arc::new(EventLog::new(clock(), 100));
        log.push("old");
        let mark = log.mark();
        let l2 = log.clone();
        tokio::spawn(async move {
            l2.push("noise");
            l2.push("old");
        });
        let r = log.wait_for(mark, 60.0, |v| *v == "old").await.unwrap();
        assert_eq!(r.seq, 2);
    }

    #[tokio::test]
    async fn times_out_in_device_time() {
        let log: EventLog<&str> = EventLog::new(clock(), 10);
        assert!(log.wait_for(log.mark(), 5.0, |_| true).await.is_none());
    }

    #[test]
    fn memory_is_bounded_and_eviction_is_counted() {
        let log = EventLog::new(clock(), 3);
        let start = log.mark();
        for i in 0..10 {
            log.push(i);
        }
        assert_eq!(log.since(start).len(), 3);
        assert_eq!(log.evicted_since(start), 7);
    }
}
