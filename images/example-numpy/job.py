# Per info.OS: how many documents, and the mean and the 90th percentile of
# the sum of each document's first histogram, with numpy and pandas; the
# vendored histstats buckets the sums.
import numpy as np
import pandas as pd

import histstats
from af_helper import field


def map(key, dims, value, context):
    os_name = field(value, "info", "OS", default="UNKNOWN")
    if not isinstance(os_name, str):
        os_name = "UNKNOWN"
    hists = field(value, "histograms", default={}) or {}
    first = next(iter(hists.values()), [])
    total = int(np.sum(np.asarray(first, dtype=np.int64))) if first else 0
    context.write(os_name, total)


def reduce(key, values, context):
    s = pd.Series(values, dtype="int64")
    context.writecsv([key, len(s), "%.2f" % s.mean(), int(np.percentile(s, 90)), histstats.bucket(s.max())])
