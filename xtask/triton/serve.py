#!/usr/bin/env python3
"""Serve the simulator's toy model from a real NVIDIA Triton Inference Server.

pytriton (nvidia-pytriton 0.7.0) bundles `tritonserver` and its Python
backend; the model is the Python function below, bound with `triton.bind`.
Nothing is downloaded. Run it from the venv setup.sh makes (a venv of the
system /usr/bin/python3.11: the backend stub links the system libpython).

The model answers, per item, `expected_output(model, input)` (the same bytes
the simulator answers, see expected_output.py) and costs what the simulator's
batches cost: a batch of b items takes (base_ms + per_item_ms * b) * J,
J = exp(N(0, jitter^2)), drawn from the simulator's own seeded RNG stream
(cost.py, a port of crates/stub-server/src/cost.rs), one draw per executed
batch in the order batches start; computing the outputs counts towards it and
a sleep makes up the rest. Triton runs one batch at a time per instance.

Tensors: input `input` BYTES, dims [1]; output `output` BYTES, dims [1]. With
max_batch_size > 0 a request has shape [B, 1]: B strings stacked along
dimension 0, answered by B outputs in the same order.

Two more models on request, for the gRPC tests and workflow:

- `--stream-model NAME`: a decoupled model (model_transaction_policy
  decoupled, so Triton answers it only on gRPC's ModelStreamInfer) that
  streams an LLM's answer on a known schedule: input `text_input` BYTES [1]
  (the prompt) and optional `max_tokens` INT32 [1]; output `text_output`
  BYTES [1]. A request gets N responses, one token each, token k (0-based)
  sent `(k + 1) * --stream-interval-ms` after its execution starts (absolute
  deadlines, so the gaps do not drift). The tokens are the simulator's
  streamed answer (`answer_text` in crates/model/src/output.rs: the words of
  expected_output, N = max_tokens clamped to 1..=50, or all 50), so a
  client can verify them. `--stream-instances` instances run requests side
  by side.
- `--fp32-model NAME`: a batching model with input `input` FP32 dims [-1]
  and output `output` FP32, twice the input; no cost of its own.

stdout carries exactly two lines once the models are loaded and
/v2/health/ready answers 200: `listening on http://127.0.0.1:PORT` (HTTP)
and `grpc listening on 127.0.0.1:PORT` (gRPC); logs go to stderr. SIGTERM or
SIGINT stops Triton and exits 0.
"""

import signal
import sys

# A stop request while the heavy imports below run (about half a second):
# nothing has started yet, so just leave with 0. main() installs the real
# handlers before it starts Triton.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

import numpy as np  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cost import ServiceTimeSampler  # noqa: E402
from expected_output import expected_output_bytes  # noqa: E402

LOOPBACK = "127.0.0.1"
LOG = logging.getLogger("serve")


class StartupAborted(Exception):
    """Raised in the main thread to leave triton.run() early."""

    def __init__(self, reason, exit_code):
        super().__init__(reason)
        self.exit_code = exit_code


def free_port():
    """A port free on loopback right now (Triton cannot report a port 0 bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def make_infer(model_name, sampler, log_batches):
    """The inference function: one call per batch Triton executes."""
    model_bytes = model_name.encode("utf-8")

    # @batch concatenates the requests of one execution (several when the
    # dynamic batcher merged them) along dimension 0 and splits the outputs
    # back per request.
    @batch
    def infer(input):  # noqa: A002 - the keyword is the tensor's name
        started = time.monotonic()
        items = input.shape[0]
        service_ms = sampler.next_ms(items)
        # BYTES items arrive as Python bytes (object array); hashing the raw
        # bytes means no decode step can alter them. About 30 us per item.
        outputs = [expected_output_bytes(model_bytes, bytes(x)) for x in input.reshape(-1)]
        # The batch takes service_ms in all: computing the outputs is part of it.
        remaining_s = service_ms / 1000.0 - (time.monotonic() - started)
        if remaining_s > 0:
            time.sleep(remaining_s)
        if log_batches:
            LOG.info("batch items=%d service_ms=%.3f", items, service_ms)
        # dtype=object keeps each output as-is (np.bytes_ would strip
        # trailing NULs); shape [B, 1] matches the input.
        return {"output": np.array(outputs, dtype=object).reshape(items, 1)}

    return infer


def answer_tokens(model, prompt):
    """The simulator's streamed answer to `prompt`: the words of
    expected_output, the first as it is and the others with their leading
    space (model::output::answer_tokens)."""
    words = expected_output_bytes(model, prompt).split(b" ")
    return [words[0]] + [b" " + w for w in words[1:]]


def make_stream_infer(model_name, interval_ms):
    """The decoupled model's function: a generator yielding one response
    per token (to each request of the call) on the schedule."""
    model_bytes = model_name.encode("utf-8")

    def stream_infer(requests):
        started = time.monotonic()
        answers = []
        for request in requests:
            prompt = bytes(request["text_input"].reshape(-1)[0])
            tokens = answer_tokens(model_bytes, prompt)
            count = len(tokens)
            if "max_tokens" in request.data:
                count = max(1, min(int(request["max_tokens"].reshape(-1)[0]), len(tokens)))
            answers.append(tokens[:count])
        for k in range(max(len(a) for a in answers)):
            due = started + (k + 1) * interval_ms / 1000.0
            remaining_s = due - time.monotonic()
            if remaining_s > 0:
                time.sleep(remaining_s)
            # A request whose answer is over gets an empty output: no token.
            yield [
                {"text_output": np.array(a[k:k + 1], dtype=object)}
                for a in answers
            ]

    return stream_infer


def fp32_infer_fn():
    """The FP32 model: twice its input."""
    @batch
    def infer(input):  # noqa: A002 - the keyword is the tensor's name
        return {"output": (input * 2.0).astype(np.float32)}

    return infer


def wait_ready(port, timeout_s):
    """Poll /v2/health/ready on loopback until 200 or the timeout."""
    url = f"http://{LOOPBACK}:{port}/v2/health/ready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="example-model",
                   help="model name (letters, digits, '.', '_', '-')")
    p.add_argument("--instances", type=int, default=2, help="model instances (CPU)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--dynamic-batching", action="store_true",
                   help="enable Triton's dynamic batcher (off: one request = one batch)")
    p.add_argument("--max-queue-delay-us", type=int, default=0,
                   help="dynamic batcher's max_queue_delay_microseconds")
    p.add_argument("--preferred-batch-size", default="",
                   help="comma-separated preferred batch sizes for the dynamic batcher")
    p.add_argument("--base-ms", type=float, default=100.0)
    p.add_argument("--per-item-ms", type=float, default=2.0)
    p.add_argument("--jitter", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--http-port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--grpc-port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--metrics-port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--http-threads", type=int, default=0,
                   help="Triton's --http-thread-count (0: Triton's default)")
    p.add_argument("--restrict-statistics", action="store_true",
                   help="keep pytriton's default: the statistics endpoint needs an access token")
    p.add_argument("--startup-timeout-s", type=float, default=120.0)
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose")
    p.add_argument("--log-batches", action="store_true",
                   help="log each executed batch's size and drawn service time to stderr")
    p.add_argument("--stream-model", default="",
                   help="also serve a decoupled streaming model of this name (gRPC only)")
    p.add_argument("--stream-interval-ms", type=float, default=10.0,
                   help="the streaming model's gap between tokens, and before the first")
    p.add_argument("--stream-instances", type=int, default=4,
                   help="instances of the streaming model (requests streamed side by side)")
    p.add_argument("--fp32-model", default="",
                   help="also serve an FP32 model of this name (output: twice the input)")
    a = p.parse_args(argv)

    def fail(msg):
        p.error(msg)

    # Triton (via pytriton) accepts only these characters in a model name.
    for flag, name in (("--model", a.model), ("--stream-model", a.stream_model),
                       ("--fp32-model", a.fp32_model)):
        if (name or flag == "--model") and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            fail(f"{flag} may contain only letters, digits, '.', '_' and '-'")
    names = [n for n in (a.model, a.stream_model, a.fp32_model) if n]
    if len(set(names)) != len(names):
        fail("--model, --stream-model and --fp32-model must differ")
    if not (math.isfinite(a.stream_interval_ms) and 0 < a.stream_interval_ms <= 10000):
        fail("--stream-interval-ms must be in (0, 10000]")
    if a.stream_instances < 1:
        fail("--stream-instances must be >= 1")
    if a.instances < 1:
        fail("--instances must be >= 1")
    if a.max_batch_size < 1:
        fail("--max-batch-size must be >= 1")
    if a.max_queue_delay_us < 0:
        fail("--max-queue-delay-us must be >= 0")
    if not (math.isfinite(a.base_ms) and a.base_ms >= 0):
        fail("--base-ms must be finite and >= 0")
    if not (math.isfinite(a.per_item_ms) and a.per_item_ms >= 0):
        fail("--per-item-ms must be finite and >= 0")
    if not (math.isfinite(a.jitter) and 0 <= a.jitter <= 2):
        fail("--jitter must be in [0, 2]")
    if not 0 <= a.seed < 1 << 64:
        fail("--seed must fit in 64 bits")
    try:
        a.preferred = [int(s) for s in a.preferred_batch_size.split(",") if s.strip()]
    except ValueError:
        fail("--preferred-batch-size must be comma-separated integers")
    if any(not 1 <= b <= a.max_batch_size for b in a.preferred):
        fail("--preferred-batch-size values must be in [1, --max-batch-size]")
    if (a.max_queue_delay_us or a.preferred) and not a.dynamic_batching:
        fail("--max-queue-delay-us / --preferred-batch-size need --dynamic-batching")
    return a


def claim_stdout():
    """Keep the real stdout for the "listening" line; send all else to stderr.

    pytriton echoes tritonserver's log to stdout with print() (TritonServer's
    verbose=True default), and child processes inherit fd 1, so both
    sys.stdout and fd 1 are pointed at stderr.
    """
    sys.stdout.flush()
    announce = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return announce


def main(argv):
    args = parse_args(argv)
    announce = claim_stdout()
    # All logging to stderr: stdout is reserved for the one "listening" line.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    http_port = args.http_port or free_port()
    grpc_port = args.grpc_port or free_port()
    metrics_port = args.metrics_port or free_port()

    config = TritonConfig(
        # Every listener on loopback only.
        http_address=LOOPBACK,
        http_port=http_port,
        grpc_address=LOOPBACK,
        grpc_port=grpc_port,
        metrics_address=LOOPBACK,
        metrics_port=metrics_port,
        allow_gpu_metrics=False,
        log_verbose=args.log_verbose,
        http_thread_count=args.http_threads or None,
    )
    # pytriton guards /v2/models/.../stats (and a few others) with a random
    # access token by default; with no restricted endpoints the statistics
    # are open. The server listens on loopback only.
    # --restrict-statistics keeps pytriton's default (statistics behind a
    # random token), as a user's Triton may have it: the client then reads
    # the Prometheus counters on the metrics port instead.
    if args.restrict_statistics:
        security = TritonSecurityConfig()
    else:
        security = TritonSecurityConfig(restricted_endpoints=[])

    batcher = None  # no dynamic_batching block: Triton's default scheduler
    if args.dynamic_batching:
        batcher = DynamicBatcher(
            max_queue_delay_microseconds=args.max_queue_delay_us,
            preferred_batch_size=args.preferred or None,
        )
    model_config = ModelConfig(batching=True, max_batch_size=args.max_batch_size, batcher=batcher)

    sampler = ServiceTimeSampler(args.base_ms, args.per_item_ms, args.jitter, args.seed)
    infer = make_infer(args.model, sampler, args.log_batches)

    stop = threading.Event()
    ready = threading.Event()
    signalled = []

    def on_signal(signum, _frame):
        signalled.append(signum)
        if ready.is_set():
            stop.set()
        else:
            # Still starting: the main thread is inside triton.run(), which
            # polls in Python, so an exception ends it promptly and the
            # finally below stops Triton.
            raise StartupAborted(f"signal {signum} during start-up", 0)

    def on_watchdog(_signum, _frame):
        raise StartupAborted(watchdog_reason[0], 1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_watchdog)
    watchdog_reason = ["?"]

    t0 = time.monotonic()
    triton = Triton(config=config, security_config=security)

    def watchdog():
        """Fail fast while starting: pytriton's run() keeps polling for a
        minute or more after tritonserver has died (a port in use, say)."""
        deadline = t0 + args.startup_timeout_s
        seen_alive = False
        while not ready.wait(0.2):
            # pytriton 0.7.0 keeps the tritonserver process wrapper here.
            server = getattr(triton, "_triton_server", None)
            alive = server is not None and server.is_alive()
            seen_alive = seen_alive or alive
            if seen_alive and not alive:
                watchdog_reason[0] = "tritonserver exited during start-up (see its log above)"
            elif time.monotonic() > deadline:
                watchdog_reason[0] = f"not ready after {args.startup_timeout_s:.0f} s"
            else:
                continue
            os.kill(os.getpid(), signal.SIGUSR1)
            return

    try:
        triton.bind(
            model_name=args.model,
            # One callable per instance: pytriton makes instance_group
            # {count: len(list), kind: KIND_CPU}, each with its own thread.
            infer_func=[infer] * args.instances,
            inputs=[Tensor(name="input", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="output", dtype=np.bytes_, shape=(1,))],
            config=model_config,
            strict=True,
        )
        if args.stream_model:
            triton.bind(
                model_name=args.stream_model,
                infer_func=[make_stream_infer(args.stream_model, args.stream_interval_ms)]
                * args.stream_instances,
                inputs=[
                    Tensor(name="text_input", dtype=np.bytes_, shape=(1,)),
                    Tensor(name="max_tokens", dtype=np.int32, shape=(1,), optional=True),
                ],
                outputs=[Tensor(name="text_output", dtype=np.bytes_, shape=(-1,))],
                config=ModelConfig(batching=False, decoupled=True),
                strict=True,
            )
        if args.fp32_model:
            triton.bind(
                model_name=args.fp32_model,
                infer_func=fp32_infer_fn(),
                inputs=[Tensor(name="input", dtype=np.float32, shape=(-1,))],
                outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(batching=True, max_batch_size=args.max_batch_size),
                strict=True,
            )
        threading.Thread(target=watchdog, name="startup-watchdog", daemon=True).start()
        # Must run on the main thread: tritonserver is started with
        # PR_SET_PDEATHSIG, which fires when the *thread* that forked it ends.
        triton.run()  # starts tritonserver, loads the model, waits for it
        if not wait_ready(http_port, max(1.0, t0 + args.startup_timeout_s - time.monotonic())):
            raise StartupAborted("/v2/health/ready never answered 200", 1)
        ready.set()
        if signalled:  # a signal between run() and ready.set()
            stop.set()
        LOG.info("ready in %.2f s; ports: http %d, grpc %d, metrics %d (all on %s)",
                 time.monotonic() - t0, http_port, grpc_port, metrics_port, LOOPBACK)
        print(f"listening on http://{LOOPBACK}:{http_port}", file=announce)
        print(f"grpc listening on {LOOPBACK}:{grpc_port}", file=announce, flush=True)

        # Wait for a signal; leave if Triton or the model dies on its own.
        while not stop.wait(1.0):
            if not triton.is_alive():
                LOG.error("Triton stopped unexpectedly")
                return 1
        LOG.info("signal %s: stopping Triton", signalled[0] if signalled else "?")
        return 0
    except StartupAborted as e:
        (LOG.info if e.exit_code == 0 else LOG.error)("start-up aborted: %s", e)
        return e.exit_code
    finally:
        ready.set()  # ends the watchdog
        triton.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
