//! Client micro-batching: logical requests queue here and leave as one
//! `{"model", "inputs": [...]}` request when `batch_size` are queued or
//! `batch_wait` after the oldest one was enqueued, whichever comes first.
//!
//! Each logical request keeps its own latency origin, so the wait for a batch
//! to fill is part of its latency, never hidden.

use std::sync::Arc;
use std::time::Duration;

use model::log::LogRow;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

use crate::engine::{Engine, LogicalRequest};

struct Queued {
    item: LogicalRequest,
    enqueued_at: Instant,
    reply: oneshot::Sender<LogRow>,
}

/// Handle to a running batcher task; cheap to share.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Batcher {
    /// Starts the batcher task on the current runtime. Batches are sent on
    /// their own tasks, so several can be in flight at once.
    pub(crate) fn spawn(engine: Arc<Engine>, batch_size: usize, batch_wait: Duration) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(engine, receiver, batch_size.max(1), batch_wait));
        Self { queue }
    }

    /// Enqueues `item` and waits for its row; `None` if the batcher stopped.
    pub(crate) async fn submit(&self, item: LogicalRequest) -> Option<LogRow> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            enqueued_at: Instant::now(),
            item,
            reply,
        };
        self.queue.send(queued).ok()?;
        answer.await.ok()
    }
}

async fn batch_loop(
    engine: Arc<Engine>,
    mut receiver: mpsc::UnboundedReceiver<Queued>,
    batch_size: usize,
    batch_wait: Duration,
) {
    // An item naming another model than the batch being filled starts the
    // next batch: one HTTP request names one model.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(queued) => queued,
            None => match receiver.recv().await {
                Some(queued) => queued,
                None => return,
            },
        };
        let deadline = first.enqueued_at + batch_wait;
        let mut batch = vec![first];
        while batch.len() < batch_size {
            // `timeout_at` polls the queue before the deadline, so items
            // already queued join even when the deadline has passed.
            match timeout_at(deadline, receiver.recv()).await {
                Ok(Some(queued)) if queued.item.model == batch[0].item.model => batch.push(queued),
                Ok(Some(queued)) => {
                    carried = Some(queued);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let engine = engine.clone();
        tokio::spawn(async move {
            let (items, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|q| (q.item, q.reply)).unzip();
            let rows = engine.execute_batch(&items).await;
            for (reply, row) in replies.into_iter().zip(rows) {
                // The submitter may have given up (shutdown); nothing to do.
                let _ = reply.send(row);
            }
        });
    }
}
