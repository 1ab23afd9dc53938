//! The event queue both discrete-event simulations run on (`sim.rs` for
//! batch inference, `llm/sim.rs` for continuous batching): events leave
//! by time, then by class (lower first at one instant, so a simulation
//! orders what happens "at the same time"), then in the order they were
//! pushed, which keeps a seeded run reproducible.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Events of kind `K`, earliest first.
#[derive(Debug)]
pub(super) struct EventQueue<K> {
    heap: BinaryHeap<Event<K>>,
    pushed: u64,
}

impl<K> EventQueue<K> {
    pub(super) fn new() -> Self {
        Self {
            heap: BinaryHeap::with_capacity(1024),
            pushed: 0,
        }
    }

    /// Schedules `kind` at `at_ms`, of `class` among events at that time.
    pub(super) fn push(&mut self, at_ms: f64, class: u8, kind: K) {
        self.pushed += 1;
        self.heap.push(Event {
            at_ms,
            class,
            seq: self.pushed,
            kind,
        });
    }

    /// The next event: its time and kind.
    pub(super) fn pop(&mut self) -> Option<(f64, K)> {
        self.heap.pop().map(|e| (e.at_ms, e.kind))
    }
}

#[derive(Debug)]
struct Event<K> {
    at_ms: f64,
    class: u8,
    seq: u64,
    kind: K,
}

impl<K> PartialEq for Event<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Event<K> {}

impl<K> PartialOrd for Event<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Event<K> {
    /// Reversed, so the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at_ms
            .total_cmp(&self.at_ms)
            .then(other.class.cmp(&self.class))
            .then(other.seq.cmp(&self.seq))
    }
}
