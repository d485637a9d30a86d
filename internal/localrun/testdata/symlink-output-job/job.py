"""A hostile job: its mapper replaces /scratch/output with a symlink to a
host-looking path and exits 0, as if the symlink were its output."""

import os

_planted = False


def map(key, dims, value, context):
    global _planted
    if not _planted:
        _planted = True
        os.remove("/scratch/output")
        os.symlink("/etc/passwd", "/scratch/output")
    context.write("x", 1)


def reduce(key, values, context):
    context.write(key, sum(values))
