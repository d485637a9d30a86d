"""The boto3 baseline of bench/50-job.sh: one Python process counts the
documents of every object under a prefix by info.OS, the way an analyst
would without af: list, get each object, gunzip it, json.loads each line.

    /usr/bin/python3 boto3_count.py BUCKET PREFIX [loads|field]

With "field" it reads info.OS with af's af_helper.field (images/python)
instead of json.loads: the same parser as the af/os-count image, to show how
much of af's lead is the parser and how much the system.

S3 comes from the standard AWS environment (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...). Prints one JSON line: the counts, the seconds the
count took (listing included, interpreter start excluded), and the
uncompressed bytes read, and the CPU seconds of the same span.
"""

import collections
import json
import os
import sys
import time
import zlib

import boto3
from botocore.config import Config


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )


def keys(s3, bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def count_object(s3, bucket, key, counts, field=None):
    """Adds the object's documents to counts; returns its uncompressed size.
    With field (af_helper.field) it reads info.OS with that instead of
    json.loads."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    raw = zlib.decompress(body, 31)  # gzip framing
    loads = json.loads
    for line in raw.splitlines():
        _, tab, doc = line.partition(b"\t")
        if not tab:
            continue  # a bad line, as the worker skips it
        try:
            if field is None:
                os_name = loads(doc)["info"]["OS"]
            else:
                os_name = field(doc, "info", "OS")
        except (ValueError, KeyError, TypeError):
            os_name = "UNKNOWN"
        if not isinstance(os_name, str):
            os_name = "UNKNOWN"
        counts[os_name] += 1
    return len(raw)


def main(bucket, prefix, parser="loads"):
    field = None
    if parser == "field":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "images", "python"))
        from af_helper import field
    elif parser != "loads":
        sys.exit("boto3_count.py: parser %r is neither loads nor field" % parser)
    start, cpu = time.monotonic(), time.process_time()
    s3 = client()
    counts = collections.Counter()
    raw = 0
    for key in keys(s3, bucket, prefix):
        raw += count_object(s3, bucket, key, counts, field)
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu
    print(json.dumps({"counts": dict(counts), "seconds": seconds, "cpu_seconds": cpu, "raw_bytes": raw}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
