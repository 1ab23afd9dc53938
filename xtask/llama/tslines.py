#!/usr/bin/env python3
"""Prefix each stdin line with seconds since start (or since T0 env, epoch s).

Used by capture.sh to show when SSE lines arrive. Lines are written with
repr() of their end so CR/LF stay visible: '\\r\\n', '\\n' or '' (EOF).
"""
import os
import sys
import time

t0 = float(os.environ.get("T0", time.time()))
for raw in sys.stdin.buffer:
    t = time.time() - t0
    body = raw.rstrip(b"\r\n")
    end = raw[len(body):]
    sys.stdout.write(f"{t:8.3f} {body.decode('utf-8', 'replace')}  {end!r}\n")
    sys.stdout.flush()
