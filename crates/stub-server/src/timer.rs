//! A sub-millisecond timer for simulated execution.
//!
//! Tokio's timer wheel ticks in whole milliseconds and rounds deadlines up,
//! and its park timeout rounds up again, so a tokio sleep can end up to about
//! 2 ms late: too coarse for "service time honoured within 2 ms at P99".
//! One OS thread keeps the pending deadlines in a heap and waits on a
//! channel with a nanosecond timeout (a futex wait, late by the kernel's
//! timer slack of ~50 us), then completes a oneshot per deadline, a quarter
//! ms early; the task yields out the rest, so little CPU is spent spinning.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Waking a tokio task from another thread takes ~0.1-0.3 ms, so the thread
/// fires this early and the task yields out the remainder itself.
const WAKE_EARLY: Duration = Duration::from_micros(250);

/// Handle to the timer thread; the thread ends when the handle is dropped
/// and every pending deadline has fired.
pub(crate) struct PreciseTimer {
    requests: mpsc::Sender<Pending>,
}

struct Pending {
    deadline: Instant,
    /// Ties broken by arrival, so equal deadlines fire in FIFO order.
    sequence: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so the max-heap yields the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.sequence).cmp(&(self.deadline, self.sequence))
    }
}

impl PreciseTimer {
    /// Starts the timer thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (requests, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("stub-server-timer".to_owned())
            .spawn(move || run(inbox))?;
        Ok(Self { requests })
    }

    /// Resolves at `deadline`, typically within tens of microseconds after it.
    pub(crate) async fn sleep_until(&self, deadline: Instant) {
        let (wake, woken) = oneshot::channel();
        let pending = Pending {
            deadline: deadline.checked_sub(WAKE_EARLY).unwrap_or(deadline),
            sequence: 0,
            wake,
        };
        if self.requests.send(pending).is_err() || woken.await.is_err() {
            // The thread is gone (it never panics, but be safe): fall back
            // to the coarse timer rather than hang.
            tokio::time::sleep_until(deadline.into()).await;
        }
        while Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
    }
}

fn run(inbox: mpsc::Receiver<Pending>) {
    let mut heap = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut open = true;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|p: &Pending| p.deadline <= now) {
            if let Some(p) = heap.pop() {
                let _ = p.wake.send(());
            }
        }
        let received = match heap.peek() {
            Some(next) if open => inbox.recv_timeout(next.deadline.saturating_duration_since(now)),
            Some(next) => {
                std::thread::sleep(next.deadline.saturating_duration_since(now));
                continue;
            }
            None if open => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            None => return,
        };
        match received {
            Ok(mut pending) => {
                pending.sequence = sequence;
                sequence += 1;
                heap.push(pending);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_before_and_in_order() {
        let timer = PreciseTimer::start().unwrap();
        let start = Instant::now();
        let mut lateness_us = Vec::new();
        for delay_us in [300u64, 1_700, 2_300, 5_100] {
            let deadline = start + Duration::from_micros(delay_us) + Duration::from_millis(1);
            timer.sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline);
            lateness_us.push(now.duration_since(deadline).as_micros());
        }
        // Generous: a shared CI machine may deschedule the thread briefly.
        assert!(lateness_us.iter().all(|l| *l < 5_000), "{lateness_us:?}");
    }
}
