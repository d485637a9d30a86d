"""A hostile job for the worker's limit tests: os-count, except that with
AF_TEST_HOSTILE=forkbomb map forks without bound, each child forking in
turn and never returning, until fork fails (EAGAIN at the container's pids
limit); the job then fails with that error, as an unguarded fork bomb
would."""

import json
import os
import time

HOSTILE = os.environ.get("AF_TEST_HOSTILE") or ""


def forkbomb():
    while True:
        pid = os.fork()  # raises BlockingIOError at the pids limit
        if pid == 0:
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.05)


def map(key, dims, value, context):
    if HOSTILE == "forkbomb":
        forkbomb()
    try:
        os_name = json.loads(value)["info"]["OS"]
    except (ValueError, KeyError, TypeError):
        os_name = "UNKNOWN"
    if not isinstance(os_name, str):
        os_name = "UNKNOWN"
    context.write(os_name, 1)


def combine(key, values, context):
    context.write(key, sum(values))


def reduce(key, values, context):
    context.write(key, sum(values))
