"""Baseline load test for the inference API.

Sends TOTAL_REQUESTS POST requests to API_URL, at most CONCURRENCY at a time,
writes one CSV row per request to OUTPUT_CSV and prints latency percentiles.
"""
import asyncio
import csv
import os
import statistics
import time

import httpx

API_URL = os.environ.get("API_URL", "http://127.0.0.1:8000/v1/infer")
OUTPUT_CSV = os.environ.get("OUTPUT_CSV", "latency_log.csv")
MODEL = "example-model"
CONCURRENCY = 20
TOTAL_REQUESTS = 400
TIMEOUT_S = 30

PROMPT_TEMPLATE = (
    "Request {i}: Summarize the following support ticket in two sentences. "
    "Ticket #{i}: The customer says the mobile app signs them out after every "
    "update and asks how to keep their saved preferences between versions."
)


def build_payload(i):
    return {"model": MODEL, "input": PROMPT_TEMPLATE.format(i=i)}


async def send_request(i, semaphore):
    async with semaphore:
        timestamp_ms = time.time() * 1000
        start = time.perf_counter()
        status_code = 0
        error = ""
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
                response = await client.post(API_URL, json=build_payload(i))
                latency_ms = (time.perf_counter() - start) * 1000
                status_code = response.status_code
        except Exception as exc:
            latency_ms = (time.perf_counter() - start) * 1000
            error = str(exc) or type(exc).__name__
        return {
            "request_id": i,
            "timestamp_ms": round(timestamp_ms, 3),
            "latency_ms": round(latency_ms, 3),
            "status_code": status_code,
            "error": error,
        }


async def main():
    semaphore = asyncio.Semaphore(CONCURRENCY)
    tasks = [send_request(i, semaphore) for i in range(TOTAL_REQUESTS)]
    results = await asyncio.gather(*tasks)

    with open(OUTPUT_CSV, "w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["request_id", "timestamp_ms", "latency_ms", "status_code", "error"]
        )
        writer.writeheader()
        writer.writerows(results)

    ok = [r["latency_ms"] for r in results if r["status_code"] == 200]
    print(f"Total requests: {len(results)}")
    print(f"Succeeded: {len(ok)}")
    print(f"Failed: {len(results) - len(ok)}")
    if len(ok) >= 2:
        q = statistics.quantiles(ok, n=100)
        print(f"P50 latency: {q[49]:.2f} ms")
        print(f"P95 latency: {q[94]:.2f} ms")
        print(f"P99 latency: {q[98]:.2f} ms")
    else:
        print("Not enough successful requests to compute percentiles")
    print(f"Log written to {OUTPUT_CSV}")


if __name__ == "__main__":
    asyncio.run(main())
