"""os-count with numpy: the counts are summed by numpy, so the job fails
at import when the image lacks python3-numpy."""

import numpy
from af_helper import field


def map(key, dims, value, context):
    try:
        os_name = field(value, "info", "OS")
    except ValueError:
        os_name = None
    if not isinstance(os_name, str):
        os_name = "UNKNOWN"
    context.write(os_name, 1)


def combine(key, values, context):
    context.write(key, int(numpy.sum(numpy.array(list(values), dtype=numpy.int64))))


def reduce(key, values, context):
    context.write(key, int(numpy.sum(numpy.array(list(values), dtype=numpy.int64))))
