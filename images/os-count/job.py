"""os-count: how many documents each operating system (info.OS) sent.

telemetry-server's job API: map emits (OS, 1), combine and reduce sum, and
the result is "OS<TAB>count" lines. Documents without info.OS count as
"UNKNOWN".

af_helper.field reads info.OS without decoding the rest of the document
(histograms are most of a ping): about ten times faster than
json.loads(value)["info"]["OS"], which job_loads.py does.
"""

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
    context.write(key, sum(values))


def reduce(key, values, context):
    context.write(key, sum(values))
