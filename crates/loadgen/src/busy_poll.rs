//! Busy polling on the shard runtimes: after a request completes, a shard
//! keeps polling its sockets, without blocking, for a short window before
//! it lets its thread sleep.
//!
//! Why: a client that goes to sleep whenever it has caught up must be woken
//! for each next response, and on loopback the server pays for that wake-up
//! inside its own `write` (a cross-CPU wake, an interprocessor interrupt,
//! which a VM makes dear). Against nginx on the 2-core VM, with the client
//! sleeping between responses nginx spent 18-19 us of CPU per request and
//! served about 52k req/s; with the client polling through the gaps, 15 us
//! and 65k req/s (README, "Performance of the tools"). The client's own
//! wake-up also stops adding to the latencies it measures.
//!
//! The price is CPU: within the window the shard's thread spins, each turn
//! one non-blocking `epoll_wait` and one `sched_yield`. A client kept busy
//! (the server is the bottleneck) spends its idle time spinning, so its CPU
//! per request then says nothing about its cost.
//!
//! Off by default (`--busy-poll-us 0`), because a spinning client hurts a
//! server that shares its CPUs: unpinned on the 2-core VM against nginx,
//! `sched_yield` or not, P99 went from 1.1-1.2 ms to 4.0 ms (a scheduler
//! tick) although throughput rose. For a client pinned to cores of its own,
//! as in `cargo xtask bench`, 50 us is a good window.
//!
//! How: one poller task per shard yields in a loop while requests complete
//! less than the window apart. A yielding task keeps tokio's
//! current-thread scheduler from parking: between turns it polls the I/O
//! driver with a zero timeout and runs whatever became ready. Once the
//! window passes without a completion the poller waits for the next one,
//! and the runtime sleeps in `epoll_wait` as usual.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

thread_local! {
    /// Requests completed on this thread (wrapping).
    static COMPLETIONS: Cell<u64> = const { Cell::new(0) };
    /// The poller, while it waits for the next completion.
    static WAITING_POLLER: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Records that a request completed on this thread: the poller's window
/// starts again, and a waiting poller wakes. Costs a thread-local update.
pub(crate) fn note_completion() {
    COMPLETIONS.with(|n| n.set(n.get().wrapping_add(1)));
    if let Some(poller) = WAITING_POLLER.with(Cell::take) {
        poller.wake();
    }
}

fn completions() -> u64 {
    COMPLETIONS.with(Cell::get)
}

/// Polls while requests complete less than `window` apart; runs until
/// dropped. Spawn one per shard, on the shard's thread.
pub(crate) async fn poll_while_busy(window: Duration) {
    loop {
        next_completion().await;
        let mut seen = completions();
        let mut quiet_since = Instant::now();
        loop {
            // Give the core to any other thread that wants it (a server on
            // the same CPUs must not wait behind a spinning client), then
            // let the scheduler poll the sockets and run what is ready.
            std::thread::yield_now();
            tokio::task::yield_now().await;
            let now = completions();
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= window {
                break;
            }
        }
    }
}

/// Resolves at the next [`note_completion`] on this thread.
async fn next_completion() {
    let start = completions();
    poll_fn(|cx| {
        if completions() != start {
            return Poll::Ready(());
        }
        WAITING_POLLER.with(|w| w.set(Some(cx.waker().clone())));
        Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_micros(50);

    /// Starts a poller and returns how many times it has been polled so
    /// far: each poll is one turn of the scheduler.
    fn counted_poller() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
        let turns = Arc::new(AtomicU64::new(0));
        let counter = turns.clone();
        let task = tokio::spawn(async move {
            let poller = poll_while_busy(WINDOW);
            tokio::pin!(poller);
            poll_fn(|cx| {
                counter.fetch_add(1, Ordering::Relaxed);
                poller.as_mut().poll(cx)
            })
            .await;
        });
        (turns, task)
    }

    async fn yields(n: usize) {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_poller_waits_until_a_request_completes() {
        let (turns, task) = counted_poller();
        yields(10).await;
        assert_eq!(turns.load(Ordering::Relaxed), 1);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_poller_spins_for_the_window_after_the_last_completion() {
        let (turns, task) = counted_poller();
        yields(3).await;
        note_completion();
        yields(10).await;
        let spinning = turns.load(Ordering::Relaxed);
        assert!(spinning >= 9, "{spinning} turns: not spinning");
        // A second completion half a window later restarts the window.
        tokio::time::advance(WINDOW / 2).await;
        note_completion();
        tokio::time::advance(WINDOW * 3 / 4).await;
        yields(10).await;
        assert!(
            turns.load(Ordering::Relaxed) >= spinning + 9,
            "stopped early"
        );
        // A whole window with no completion: it stops and the clock runs.
        tokio::time::advance(WINDOW).await;
        yields(3).await;
        let stopped = turns.load(Ordering::Relaxed);
        yields(10).await;
        assert_eq!(turns.load(Ordering::Relaxed), stopped);
        task.abort();
    }
}
