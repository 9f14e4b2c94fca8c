//! An append-only, bounded, timestamped log that steps wait on.
//!
//! Every record gets a sequence number and a device-time stamp. Steps take a [`Mark`]
//! before acting and then wait for a record after it that matches a predicate. The log
//! keeps the most recent `capacity` records in memory (the evidence writer has the full
//! history on disk), so a device that floods the rig cannot make it grow without bound.
//!
//! A wait never misses a record, however fast the device writes and however late the
//! waiting task runs: the waiter's predicate is registered with the log and tried on
//! every new record as it is appended, on the thread that appends it (the serial
//! reader, for a console). So matching keeps pace with the input by construction, and
//! eviction cannot take a record before it was examined.

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
    /// Waits in progress, each tried on every record appended.
    waiters: Vec<Waiter<T>>,
    next_waiter: u64,
}

type Pred<T> = Box<dyn FnMut(&T) -> bool + Send>;

struct Waiter<T> {
    id: u64,
    pred: Pred<T>,
    found: Option<Record<T>>,
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
                waiters: Vec::new(),
                next_waiter: 0,
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
            for w in inner.waiters.iter_mut().filter(|w| w.found.is_none()) {
                if (w.pred)(&record.value) {
                    w.found = Some(record.clone());
                }
            }
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
    /// `timeout_secs` of device time have passed. Returns the first match. Records
    /// still in memory are tried at once; every later record is tried as it is
    /// appended (see the module documentation), so none is missed. `pred` runs on the
    /// appending thread with the log locked: it must be quick and must not use this
    /// log.
    pub async fn wait_for(
        &self,
        mark: Mark,
        timeout_secs: f64,
        mut pred: impl FnMut(&T) -> bool + Send + 'static,
    ) -> Option<Record<T>> {
        let deadline = self.clock.deadline(timeout_secs);
        let _w = crate::clock::Waiting::begin();
        let mut rx = self.notify.subscribe();
        let id = {
            let mut inner = self.inner.lock().unwrap();
            for r in inner.records.iter().filter(|r| r.seq >= mark.0) {
                if pred(&r.value) {
                    return Some(r.clone());
                }
            }
            let id = inner.next_waiter;
            inner.next_waiter += 1;
            inner.waiters.push(Waiter {
                id,
                pred: Box::new(pred),
                found: None,
            });
            id
        };
        // Unregisters the wait however it ends (found, timed out, cancelled).
        struct Registered<'a, T> {
            log: &'a Mutex<Inner<T>>,
            id: u64,
        }
        impl<T> Drop for Registered<'_, T> {
            fn drop(&mut self) {
                let mut inner = self.log.lock().unwrap_or_else(|p| p.into_inner());
                inner.waiters.retain(|w| w.id != self.id);
            }
        }
        let _registered = Registered {
            log: &self.inner,
            id,
        };
        let found = || {
            let mut inner = self.inner.lock().unwrap();
            inner
                .waiters
                .iter_mut()
                .find(|w| w.id == id)
                .and_then(|w| w.found.take())
        };
        loop {
            if let Some(r) = found() {
                return Some(r);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return found(),
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

    /// A waiter that does not run while the device floods the log still gets the
    /// record it waits for, though it was evicted long before the waiter ran.
    #[test]
    fn a_starved_waiter_misses_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let log = std::sync::Arc::new(EventLog::new(clock(), 16));
        let mark = log.mark();
        let l2 = log.clone();
        let l4 = log.clone();
        rt.block_on(async move {
            let log = l4;
            let wait =
                tokio::spawn(async move { l2.wait_for(mark, 3600.0, |v: &u32| *v == 5_000).await });
            // Let the wait register, then flood from a thread while this runtime's
            // only worker is blocked: the waiting task cannot run meanwhile.
            tokio::task::yield_now().await;
            let l3 = log.clone();
            std::thread::spawn(move || {
                for i in 0..100_000u32 {
                    l3.push(i);
                }
            })
            .join()
            .unwrap();
            assert!(log.evicted_since(mark) > 90_000, "the record is long gone");
            let r = wait.await.unwrap().expect("found");
            assert_eq!(r.value, 5_000);
            assert_eq!(r.seq, 5_000);
        });
        assert!(
            log.inner.lock().unwrap().waiters.is_empty(),
            "the wait is unregistered"
        );
    }

    #[tokio::test]
    async fn a_cancelled_wait_is_unregistered() {
        let log: EventLog<u32> = EventLog::new(clock(), 4);
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            log.wait_for(log.mark(), 3600.0, |_| false),
        )
        .await;
        assert!(r.is_err());
        assert!(log.inner.lock().unwrap().waiters.is_empty());
        log.push(1);
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
