"""The worker's hostile-scratch job: os-count (documents by info.OS) that,
in the tasks of the kind AF_TEST_ATTACK_TASK names (map or reduce), attacks
the worker through /scratch as AF_TEST_ATTACK says:

symlink-output  after writing its output, replace /scratch/output with a
                symlink to the host file AF_TEST_CANARY, and plant symlinks
                to AF_TEST_PLANT at the names the worker once wrote its own
                files under (result.sorted, inputs, sort spill files)
fifo-output     replace /scratch/output with a FIFO after writing it
no-input        never open the input FIFO; sleep forever
fill            write AF_TEST_FILL_FILES files of AF_TEST_FILL_BYTES bytes
                into /scratch, then sleep forever
"""

import atexit
import json
import os
import time

ATTACK = os.environ.get("AF_TEST_ATTACK", "")
MINE = os.environ.get("AF_TEST_ATTACK_TASK", "") == os.environ.get("AF_TASK_KIND")
SCRATCH = os.path.dirname(os.environ.get("AF_OUTPUT", "/scratch/output"))


def sleep_forever():
    while True:
        time.sleep(3600)


def replace_output(make):
    # One rename: the worker never sees the output missing.
    tmp = os.path.join(SCRATCH, "output.new")
    make(tmp)
    os.rename(tmp, os.path.join(SCRATCH, "output"))


def plant():
    target = os.environ.get("AF_TEST_PLANT")
    if not target:
        return
    for name in ("result.sorted", "inputs", "work", "af-sort-run-1", "af-sort-run-2"):
        try:
            os.symlink(target, os.path.join(SCRATCH, name))
        except OSError:
            pass


def attack():
    if ATTACK == "symlink-output":
        replace_output(lambda p: os.symlink(os.environ["AF_TEST_CANARY"], p))
    elif ATTACK == "fifo-output":
        replace_output(os.mkfifo)
    print("hostile: replaced /scratch/output (%s)" % ATTACK, flush=True)


if MINE:
    if ATTACK == "no-input":
        print("hostile: never opening the input", flush=True)
        sleep_forever()
    if ATTACK == "fill":
        size = int(os.environ.get("AF_TEST_FILL_BYTES", "1048576"))
        block = bytes((i * 131 + (i >> 8)) & 0xFF for i in range(1 << 16))
        for n in range(int(os.environ.get("AF_TEST_FILL_FILES", "1"))):
            with open(os.path.join(SCRATCH, "fill-%d" % n), "wb") as f:
                left = size
                while left > 0:
                    k = min(left, len(block))
                    f.write(block[:k])
                    left -= k
        print("hostile: filled /scratch", flush=True)
        sleep_forever()
    if ATTACK in ("symlink-output", "fifo-output"):
        plant()
        # After the helper has written the output: the worker then finds
        # the replacement.
        atexit.register(attack)


def map(key, dims, value, context):
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
