"""os-count with json.loads: the example job (job.py) written the way the
baselines of bench/50-job.sh read documents, decoding each one whole. The
benchmark builds it as af/os-count-loads (images/build.sh os-count-loads) to
show what af's helper gains with the same parser as boto3 and Dask.

telemetry-server's job API: map emits (OS, 1), combine and reduce sum, and
the result is "OS<TAB>count" lines. Documents without info.OS count as
"UNKNOWN".
"""

import json

_loads = json.loads


def map(key, dims, value, context):
    try:
        os_name = _loads(value)["info"]["OS"]
    except (ValueError, KeyError, TypeError):
        os_name = "UNKNOWN"
    if not isinstance(os_name, str):
        os_name = "UNKNOWN"
    context.write(os_name, 1)


def combine(key, values, context):
    context.write(key, sum(values))


def reduce(key, values, context):
    context.write(key, sum(values))
