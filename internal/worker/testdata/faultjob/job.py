"""The worker's fault-test job: os-count (documents by info.OS), with two
faults the tests switch on through the task's environment:

AF_TEST_SLEEP_PER_RECORD  seconds map sleeps per record, so a worker can be
                          killed or stopped while a task runs
AF_TEST_RAISE_ON          a document id on which map raises, as a buggy job
                          would
"""

import json
import os
import time

SLEEP = float(os.environ.get("AF_TEST_SLEEP_PER_RECORD") or 0)
RAISE_ON = os.environ.get("AF_TEST_RAISE_ON") or ""


def map(key, dims, value, context):
    if SLEEP:
        time.sleep(SLEEP)
    if RAISE_ON and key == RAISE_ON:
        raise ValueError("poisoned document %s" % key)
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
