#!/usr/bin/env python3
"""A pure-stdlib port of the simulator's batch cost model.

Mirrors ServiceTimeSampler in crates/stub-server/src/cost.rs: a batch of b
items costs (base_ms + per_item_ms * b) * exp(jitter * z), z a standard normal
from Box-Muller over a SplitMix64 stream seeded with `seed`; one draw per
batch, so a seed pins the whole sequence. serve.py draws one per executed
batch, in the order batches start, as stub-server does.

Run as a script it prints COUNT service times (ms, repr floats), one a line:
    python3 cost.py BASE_MS PER_ITEM_MS JITTER SEED ITEMS COUNT
"""

import math
import sys
import threading

MASK64 = (1 << 64) - 1


class ServiceTimeSampler:
    """Port of the simulator's ServiceTimeSampler: SplitMix64 + Box-Muller.

    The same seed gives the same sequence of service times as stub-server.
    Shared by all instances; a lock keeps draws in batch-start order.
    """

    def __init__(self, base_ms, per_item_ms, jitter, seed):
        self.base_ms = base_ms
        self.per_item_ms = per_item_ms
        self.jitter = jitter
        self.state = seed & MASK64
        self.spare = None  # Box-Muller yields normals in pairs
        self.lock = threading.Lock()

    def _next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def _unit_open_closed(self):
        # Uniform in (0, 1]: never 0, so its logarithm is finite.
        return ((self._next_u64() >> 11) + 1.0) / float(1 << 53)

    def _standard_normal(self):
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        u1 = self._unit_open_closed()
        u2 = self._unit_open_closed()
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = 2.0 * math.pi * u2
        self.spare = radius * math.sin(angle)
        return radius * math.cos(angle)

    def next_ms(self, items):
        nominal = self.base_ms + self.per_item_ms * items
        with self.lock:
            # Drawn even when jitter is 0, as the simulator does.
            z = self._standard_normal()
        try:
            ms = nominal * math.exp(self.jitter * z)
        except OverflowError:
            ms = float("inf")
        return ms if math.isfinite(ms) and ms >= 0.0 else nominal


def main(argv):
    if len(argv) != 6:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    base_ms, per_item_ms, jitter = (float(v) for v in argv[:3])
    seed, items, count = (int(v) for v in argv[3:])
    sampler = ServiceTimeSampler(base_ms, per_item_ms, jitter, seed)
    for _ in range(count):
        print(repr(sampler.next_ms(items)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
