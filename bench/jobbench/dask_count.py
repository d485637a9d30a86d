"""The Dask baseline of bench/50-job.sh: the same count as boto3_count.py on
a dask.distributed LocalCluster (two worker processes of one thread each on
this two-core machine), one dask.bag element per object.

    /usr/bin/python3 dask_count.py BUCKET PREFIX [WORKERS]

The worker processes import boto3_count through PYTHONPATH (the caller sets
it to this directory). Each task reads its object from S3 with boto3 (one client per worker
process), gunzips it and counts json.loads(doc)["info"]["OS"]; the per-object
counts are folded into one. Prints one JSON line: the counts, the seconds of
the computation (listing included; the cluster is started before the clock
starts, as a running af installation is), the CPU seconds of the computation
(every process of the cluster), the cluster's start-up seconds and the
uncompressed bytes read.
"""

import collections
import json
import logging
import os
import sys
import time

import boto3_count


def count_key(arg):
    bucket, key = arg
    s3 = _client()
    counts = collections.Counter()
    raw = boto3_count.count_object(s3, bucket, key, counts)
    return counts, raw


_S3 = None


def _client():
    global _S3
    if _S3 is None:
        _S3 = boto3_count.client()
    return _S3


def merge(a, b):
    counts = collections.Counter(a[0])
    counts.update(b[0])
    return counts, a[1] + b[1]


def _cpu():
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(bucket, prefix, workers):
    import dask.bag as db
    from dask.distributed import Client, LocalCluster

    t0 = time.monotonic()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    startup = time.monotonic() - t0

    # CPU of the computation: the worker processes' and this one's (the
    # client and the scheduler run here).
    workers_cpu = client.run(_cpu)
    start, cpu = time.monotonic(), _cpu()
    s3 = boto3_count.client()
    keys = [(bucket, k) for k in boto3_count.keys(s3, bucket, prefix)]
    bag = db.from_sequence(keys, npartitions=len(keys))
    counts, raw = bag.map(count_key).fold(merge, initial=(collections.Counter(), 0)).compute()
    seconds, cpu = time.monotonic() - start, _cpu() - cpu
    for w, after in client.run(_cpu).items():
        cpu += after - workers_cpu.get(w, 0)

    client.close()
    cluster.close()
    print(json.dumps({"counts": dict(counts), "seconds": seconds, "cpu_seconds": cpu,
                      "startup_seconds": startup, "raw_bytes": raw}))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
