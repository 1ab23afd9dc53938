//! Thread-per-core execution for the closed loop: N OS threads, each running
//! a single-threaded tokio runtime with its own reactor, timer and
//! connections, like wrk's threads.
//!
//! Why: on a work-stealing runtime a request's task, its socket's reactor
//! and the worker that wakes it can sit on different threads, so every
//! request may cross threads (a futex wake, a cache miss, sometimes a
//! context switch). Pinned to a shard, a worker's request, connection and
//! wake-ups stay on one thread. The connection pool is split the same way
//! ([`current`] picks the part): a socket is only ever used on the runtime
//! whose reactor it is registered with.

use std::cell::Cell;
use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

thread_local! {
    /// 0 off the shards (the caller's runtime), k + 1 on shard k.
    static POOL_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Which connection pool the calling thread uses: 0 off the shards, k + 1
/// on shard k. A transport keeps `shard_count + 1` pools.
pub(crate) fn current() -> usize {
    POOL_INDEX.with(Cell::get)
}

struct Shard {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Running shard threads; stopped and joined when dropped.
pub(crate) struct Shards {
    shards: Vec<Shard>,
}

impl Shards {
    /// Starts `count` (at least 1) shard threads.
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let mut shards = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            shards.push(Self::start_one(index)?);
        }
        Ok(Self { shards })
    }

    fn start_one(index: usize) -> std::io::Result<Shard> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("loadgen-shard-{index}"))
            .spawn(move || {
                POOL_INDEX.with(|pool| pool.set(index + 1));
                // Spawned tasks run while this thread blocks here.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Shard {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// How many shards run.
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    /// Spawns a task made by `make` on every shard into `set`.
    pub(crate) fn spawn_on_each<F>(&self, set: &mut JoinSet<()>, make: impl Fn() -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        for shard in &self.shards {
            set.spawn_on(make(), &shard.handle);
        }
    }

    /// Spawns `task` on shard `n % len` into `set`.
    pub(crate) fn spawn_into<F>(&self, set: &mut JoinSet<()>, n: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shard = &self.shards[n % self.shards.len()];
        set.spawn_on(task, &shard.handle);
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for shard in &mut self.shards {
            if let Some(stop) = shard.stop.take() {
                let _ = stop.send(());
            }
        }
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_run_on_their_shard_threads_and_pools() {
        let shards = Shards::start(3).unwrap();
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let mut set = JoinSet::new();
        for n in 0..9 {
            let seen = seen.clone();
            shards.spawn_into(&mut set, n, async move {
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                seen.lock().unwrap().insert((n % 3, thread, current()));
            });
        }
        while set.join_next().await.is_some() {}
        let seen = seen.lock().unwrap().clone();
        let expected: BTreeSet<_> = (0..3)
            .map(|k| (k, format!("loadgen-shard-{k}"), k + 1))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(current(), 0, "the caller's thread is off the shards");
    }
}
