"""The json.loads floor of bench/50-job.sh: how fast this Python decodes the
benchmark's documents with json.loads alone, in MB of uncompressed input per
CPU second. Every Python system in the benchmark (the af helper image, the
boto3 script, Dask) runs json.loads on every document, so this bounds them
all: none can count faster than the cores times this rate.

    /usr/bin/python3 loads_floor.py BUCKET PREFIX [OBJECTS]

Reads the first OBJECTS objects (default 8) into memory untimed, then times
json.loads(doc)["info"]["OS"] over their documents, best of three. Prints
one JSON line.
"""

import json
import sys
import time
import zlib

import boto3_count


def main(bucket, prefix, n):
    s3 = boto3_count.client()
    docs, raw = [], 0
    for i, key in enumerate(boto3_count.keys(s3, bucket, prefix)):
        if i >= n:
            break
        data = zlib.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), 31)
        raw += len(data)
        for line in data.splitlines():
            _, tab, doc = line.partition(b"\t")
            if tab:
                docs.append(doc)
    loads = json.loads
    best = None
    for _ in range(3):
        start = time.process_time()
        for doc in docs:
            loads(doc)["info"]["OS"]
        cpu = time.process_time() - start
        best = cpu if best is None else min(best, cpu)
    print(json.dumps({"raw_bytes": raw, "cpu_seconds": best, "docs": len(docs)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
