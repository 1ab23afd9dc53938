//! A race between work and a guard (a deadline, an abort signal) that polls
//! the guard only when the guard's own waker fired.
//!
//! Why not `tokio::select!`: it polls every branch on every wake of the
//! task. A streamed answer wakes its task once per token, so a 256-token
//! answer polled its deadline's timer 256 times and the run's abort signal
//! as often, for nothing: at 1,000 streams those polls took about 2% of
//! the client's CPU (`perf record`, 1,000 streams of 256 tokens). Here the
//! guard gets a waker of its own, which marks it woken and then wakes the
//! task; the guard is polled on the first poll and after such a wake only.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Which side finished first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finished<W, G> {
    /// The work, with its output.
    Work(W),
    /// The guard, with its output; the work is dropped unfinished.
    Guard(G),
}

/// The guard's waker: records that the guard has something to say, then
/// wakes the task that runs the race. The task's waker stays registered
/// after a wake (a guard may fire more than once, as a watched value that
/// changes twice), and the lock is taken only to register a new waker or
/// to wake: never on a poll of the work.
#[derive(Debug, Default)]
struct GuardWoken {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl GuardWoken {
    fn register(&self, waker: &Waker) {
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
    }
}

impl Wake for GuardWoken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waker) = task.as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// Runs `work` until it finishes or `guard` does. When both are ready on
/// the same poll the work wins (as a `biased` select with the work first).
pub(crate) async fn race<W: Future, G: Future>(
    work: W,
    guard: G,
) -> Finished<W::Output, G::Output> {
    let mut work = pin!(work);
    let mut guard = pin!(guard);
    let flag = Arc::new(GuardWoken::default());
    let guard_waker = Waker::from(Arc::clone(&flag));
    // The guard has never been polled, so it has no waker yet.
    flag.woken.store(true, Ordering::Relaxed);
    // The task's waker as last registered: a task polls with the same
    // waker each time, and comparing it is a pointer compare where
    // registering again would take the lock on every token.
    let mut registered: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        // Registered before anything is polled, so a guard that fires
        // while the work runs still finds the task to wake.
        if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            flag.register(cx.waker());
            registered = Some(cx.waker().clone());
        }
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Finished::Work(output));
        }
        if flag.woken.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(output) = guard.as_mut().poll(&mut Context::from_waker(&guard_waker))
            {
                return Poll::Ready(Finished::Guard(output));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A future that counts its polls and is ready after `ready_after` of
    /// them, waking its task at once each time (as a stream's reads do).
    struct Busy {
        polls: Arc<AtomicUsize>,
        ready_after: usize,
    }

    impl Future for Busy {
        type Output = usize;

        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let n = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= self.ready_after {
                return Poll::Ready(n);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A guard that counts its polls and is never ready.
    struct Counted<F> {
        inner: F,
        polls: Arc<AtomicUsize>,
    }

    impl<F: Future + Unpin> Future for Counted<F> {
        type Output = F::Output;

        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            std::pin::Pin::new(&mut self.inner).poll(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_is_polled_once_while_the_work_wakes_itself() {
        let work_polls = Arc::new(AtomicUsize::new(0));
        let guard_polls = Arc::new(AtomicUsize::new(0));
        let finished = race(
            Busy {
                polls: Arc::clone(&work_polls),
                ready_after: 256,
            },
            Counted {
                inner: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
                polls: Arc::clone(&guard_polls),
            },
        )
        .await;
        assert_eq!(finished, Finished::Work(256));
        assert_eq!(work_polls.load(Ordering::Relaxed), 256);
        // Polled on the first poll only: its timer never fired.
        assert_eq!(guard_polls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_that_fires_ends_the_race() {
        let guard_polls = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let finished = race(
            std::future::pending::<()>(),
            Counted {
                inner: Box::pin(tokio::time::sleep(Duration::from_secs(3))),
                polls: Arc::clone(&guard_polls),
            },
        )
        .await;
        assert_eq!(finished, Finished::Guard(()));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Once to register, once when its timer woke it.
        assert_eq!(guard_polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_signal_sent_while_the_work_is_pending_is_seen() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let racing = tokio::spawn(async move {
            race(
                done_rx,
                async move { rx.wait_for(|stop| *stop).await.is_ok() },
            )
            .await
        });
        tokio::task::yield_now().await;
        tx.send_replace(true);
        let finished = racing.await.expect("the race panicked");
        assert_eq!(finished, Finished::Guard(true));
        drop(done_tx);
    }

    #[tokio::test]
    async fn a_guard_woken_twice_wakes_the_task_twice() {
        // A watched value that changes twice: the first change does not
        // end the race, the second must still reach the task.
        let (tx, mut rx) = tokio::sync::watch::channel(0);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let racing = tokio::spawn(async move {
            race(done_rx, async move {
                rx.wait_for(|n| *n == 2).await.map(|n| *n).ok()
            })
            .await
        });
        tokio::task::yield_now().await;
        tx.send_replace(1);
        tokio::task::yield_now().await;
        tx.send_replace(2);
        // A lost wake-up would hang here: fail instead.
        let finished = tokio::time::timeout(Duration::from_secs(10), racing)
            .await
            .expect("the second change never reached the task")
            .expect("the race panicked");
        assert_eq!(finished, Finished::Guard(Some(2)));
        drop(done_tx);
    }

    #[tokio::test]
    async fn work_ready_with_the_guard_wins() {
        let finished = race(std::future::ready(1), std::future::ready(2)).await;
        assert_eq!(finished, Finished::Work(1));
    }
}
