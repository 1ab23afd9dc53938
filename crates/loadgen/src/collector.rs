//! The log writer: a plain thread that takes every row from the run's
//! channel, writes it to the CSV log and adds it to the statistics, and
//! publishes those for the progress bar and the live metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use model::log::{LogRow, LogWriter};
use tokio::sync::mpsc;

use crate::error::LoadError;
use crate::metrics::RunMetrics;
use crate::progress;
use crate::summary::RowStats;

type CollectorHandle = std::thread::JoinHandle<Result<RowStats, LoadError>>;

/// How long the collector sleeps when the channel is empty. It polls rather
/// than blocks: a blocked receiver must be woken (a futex syscall and, on a
/// busy core, a context switch) for every row, which cost ~1.6 context
/// switches per request and capped throughput; polling lets senders push
/// without waking anyone. 1 ms of delay before a row is counted is harmless.
const COLLECTOR_POLL: Duration = Duration::from_millis(1);

/// The longest sleep: each poll that finds the channel empty again doubles
/// the sleep up to this, and a row brings it back to [`COLLECTOR_POLL`].
/// A slow run (one stream, a few ms a request) otherwise woke the thread a
/// thousand times a second for nothing: against Triton at concurrency 1
/// (4.4 ms a request) that was about 30 us of CPU a request, loadgen's
/// whole excess over perf_analyzer there. A run whose rows keep coming
/// never backs off.
const COLLECTOR_POLL_MAX: Duration = Duration::from_millis(16);

/// The next sleep after one that found the channel empty.
fn backed_off(sleep: Duration) -> Duration {
    (sleep * 2).min(COLLECTOR_POLL_MAX)
}

/// Rows between two looks at the clock while rows keep coming (when the
/// channel is empty the collector looks at every poll).
const PUBLISH_CHECK_ROWS: u32 = 64;

/// Writes rows on a plain thread so file I/O never blocks the runtime that
/// times requests; flushes once a second so an interrupted run keeps its rows.
/// With `live` (a progress bar is drawn), publishes the statistics so far
/// every [`progress::PUBLISH_INTERVAL`]. With `yield_to_timing` (rows of
/// streamed answers), the thread runs below the timing threads' priority
/// (see [`yield_to_the_timing_threads`]).
pub(crate) fn spawn_collector(
    mut rows: mpsc::UnboundedReceiver<LogRow>,
    mut writer: Option<LogWriter<std::io::BufWriter<std::fs::File>>>,
    live: Option<Arc<progress::Live>>,
    metrics: Option<Arc<RunMetrics>>,
    yield_to_timing: bool,
) -> Result<CollectorHandle, LoadError> {
    std::thread::Builder::new()
        .name("loadgen-log".into())
        .spawn(move || {
            if yield_to_timing {
                yield_to_the_timing_threads();
            }
            let mut stats = RowStats::new();
            let mut last_flush = Instant::now();
            let mut last_publish = Instant::now();
            let mut unchecked_rows = 0u32;
            let mut idle_sleep = COLLECTOR_POLL;
            let mut publish_if_due = |stats: &RowStats| {
                if let Some(live) = &live {
                    if last_publish.elapsed() >= progress::PUBLISH_INTERVAL {
                        live.publish(stats);
                        last_publish = Instant::now();
                    }
                }
            };
            loop {
                let row = match rows.try_recv() {
                    Ok(row) => row,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        publish_if_due(&stats);
                        std::thread::sleep(idle_sleep);
                        idle_sleep = backed_off(idle_sleep);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                };
                idle_sleep = COLLECTOR_POLL;
                stats.record(&row);
                if let Some(metrics) = &metrics {
                    metrics.record(&row);
                }
                unchecked_rows += 1;
                if unchecked_rows >= PUBLISH_CHECK_ROWS {
                    unchecked_rows = 0;
                    publish_if_due(&stats);
                }
                if let Some(w) = writer.as_mut() {
                    w.write_row(&row)?;
                    if last_flush.elapsed() >= Duration::from_secs(1) {
                        w.flush()?;
                        last_flush = Instant::now();
                    }
                }
            }
            if let Some(w) = writer.as_mut() {
                w.flush()?;
            }
            Ok(stats)
        })
        .map_err(|_| LoadError::Collector)
}

/// Lowers this thread's priority (nice 10), so that on a busy core the
/// threads that read responses and take their times run first and the
/// rows wait instead. Rows come in bursts: 1,000 streams that end in the
/// same step hand the collector 1,000 rows (each with its answer's
/// inter-token gaps to add) while the other streams' last tokens are
/// still arriving; at the same priority those reads waited behind it. A
/// nice 10 thread still gets about a tenth of a saturated core, so rows
/// keep moving. Only for LLM answers: a plain HTTP run's rows are cheap
/// and steady, and a run that saturates its cores should not leave its
/// rows a tenth of one. Where the priority cannot be changed nothing else
/// does.
///
/// Started under a real-time policy (`chrt -f 1 loadgen ...`, the way to
/// keep kernel threads off a client's core), every thread inherits it, and
/// under it a nice value counts for nothing: the collector would hold the
/// timing thread off its core for a whole burst. So it first goes back to
/// the normal policy, which a thread may always do.
fn yield_to_the_timing_threads() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getscheduler and sched_setscheduler with pid 0 read
        // and set the calling thread's policy only; the parameter is plain
        // data that outlives the call.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy == libc::SCHED_FIFO || policy == libc::SCHED_RR {
            let normal = libc::sched_param { sched_priority: 0 };
            let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal) };
        }
        // SAFETY: gettid and setpriority take and return plain integers;
        // on Linux the nice value is per thread, so this changes only the
        // collector's.
        let tid = unsafe { libc::gettid() };
        if let Ok(tid) = libc::id_t::try_from(tid) {
            let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, COLLECTOR_NICE) };
        }
    }
}

/// The collector thread's nice value (see [`yield_to_the_timing_threads`]).
#[cfg(target_os = "linux")]
const COLLECTOR_NICE: libc::c_int = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_collector_backs_off_to_its_longest_sleep() {
        let mut sleep = COLLECTOR_POLL;
        let mut seen = vec![sleep];
        for _ in 0..6 {
            sleep = backed_off(sleep);
            seen.push(sleep);
        }
        let ms: Vec<u128> = seen.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [1, 2, 4, 8, 16, 16, 16]);
    }

    /// A collector started under `chrt -f` leaves the real-time policy
    /// and takes nice 10.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_collector_leaves_a_real_time_policy_and_lowers_its_nice() {
        let (policy, nice) = std::thread::spawn(|| {
            let fifo = libc::sched_param { sched_priority: 1 };
            // SAFETY: pid 0 is this (test) thread; the parameter outlives the call.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) } != 0 {
                let why = std::io::Error::last_os_error();
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot take SCHED_FIFO to test leaving it: {why}"
                );
                eprintln!(
                    "skipped the real-time half: SCHED_FIFO refused ({why}); the nice half runs"
                );
            }
            yield_to_the_timing_threads();
            // SAFETY: plain reads of this thread's policy and nice value.
            let policy = unsafe { libc::sched_getscheduler(0) };
            let tid = libc::id_t::try_from(unsafe { libc::gettid() }).unwrap_or(0);
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
            (policy, nice)
        })
        .join()
        .expect("the test thread ran");
        assert_eq!(policy, libc::SCHED_OTHER);
        // At least 10: a test run under `nice` may start above it, and
        // only a privileged thread may lower its nice value.
        assert!(nice >= COLLECTOR_NICE, "nice {nice}");
    }
}
