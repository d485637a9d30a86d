"""af_helper runs an analyst's Python MapReduce job inside an af job container.

    python3 -m af_helper map|reduce [--af-original] [--combine auto|true|false|FILE] JOBFILE [ARGS...]

The worker streams the task's input to the path in $AF_INPUT ("-" is stdin)
and collects $AF_OUTPUT when the helper exits 0. Any other exit status fails
the task; a traceback on stderr says why.

Job API (telemetry-server's mapreduce/job.py):

    def map(key, dims, value, context):       # key: document id (str); dims: list of
        context.write(k, v)                   #   dimension values; value: the JSON text
    def combine(key, values, context):        # optional, run inside each mapper task
        context.write(key, sum(values))       #   (and by the reducer) on a key's values
    def setup_reduce(context):                # optional, once before the first reduce
        context.field_separator = ","
    def reduce(key, values, context):         # values of one key, in a list
        context.write(key, sum(values))       # also writeline(line), writecsv(fields):
                                              #   CSV as the csv module writes it, or
                                              #   fields joined by field_separator once set

af_helper.field(value, "info", "OS") reads one field of a document without
decoding the rest of it (much faster than json.loads for a field near the start).

Keys and values travel between map and reduce as JSON (json.dumps), so use
JSON-representable keys and values (tuples arrive as lists).

AF's original form (--af-original) runs mapper(uuid, file, json) -> "key value"
lines and, when the module has one, reduce(key, values) -> a line.

Input (map): the framed records of af's internal/records package. A line whose
first byte is 0x1E starts a file: a JSON header {"key": ..., "dims": [...]}.
Every other line is "<document id>\\t<json>\\n" (the worker drops lines that
break that shape before they get here).
Input (reduce): "<json key>\\t<json value>\\n" lines sorted by key.
Output (map): "<json key>\\t<json value>\\n" lines. Output (reduce): the job's
result, written by the reduce context.
"""

import csv
import importlib.util
import json
import os
import sys
import time
import traceback

MARKER = 0x1E
# telemetry-server's Reducer.COMBINE_SIZE: combine a key's values once this
# many have piled up.
COMBINE_SIZE = 50
# A mapper's combine buffer holds at most this many keys before it combines
# and flushes everything, so memory stays bounded whatever the key space.
MAX_KEYS = 200_000
READ_BUF = 1 << 20
FLUSH_LINES = 8192

_dumps = json.dumps
_loads = json.loads


_scanstring = json.decoder.scanstring
_raw_decode = json.JSONDecoder().raw_decode
_WS = " \t\n\r"


def _skip_ws(doc, i):
    n = len(doc)
    while i < n and doc[i] in _WS:
        i += 1
    return i


def field(doc, *path, default=None):
    """Returns the value at path (object keys, outside in) in the JSON text doc.

    Only the top-level members before path[0] are decoded (to skip them) and
    path[0]'s value, in C; the rest of the document is not read. On a
    telemetry ping, whose "info" comes first, field(value, "info", "OS")
    costs about a ninth of json.loads(value)["info"]["OS"]. Returns default
    when the path is absent or crosses a non-object. When the top level
    repeats path[0] the first occurrence wins (json.loads keeps the last).
    Raises ValueError for malformed JSON met on the way to the value.
    """
    if isinstance(doc, (bytes, bytearray)):
        doc = doc.decode("utf-8", "surrogateescape")
    i = _skip_ws(doc, 0)
    if not path:
        return _raw_decode(doc, i)[0]
    if doc[i:i + 1] != "{":
        return default
    i = _skip_ws(doc, i + 1)
    if doc[i:i + 1] == "}":
        return default
    name = path[0]
    while True:
        if doc[i:i + 1] != '"':
            raise ValueError("field: expected a key at offset %d" % i)
        key, i = _scanstring(doc, i + 1)
        i = _skip_ws(doc, i)
        if doc[i:i + 1] != ":":
            raise ValueError("field: expected ':' at offset %d" % i)
        v, i = _raw_decode(doc, _skip_ws(doc, i + 1))
        if key == name:
            for p in path[1:]:
                if not isinstance(v, dict) or p not in v:
                    return default
                v = v[p]
            return v
        i = _skip_ws(doc, i)
        c = doc[i:i + 1]
        if c == ",":
            i = _skip_ws(doc, i + 1)
        elif c == "}":
            return default
        else:
            raise ValueError("field: expected ',' or '}' at offset %d" % i)


class JobError(Exception):
    """The job (not the helper) is broken: missing function, bad file."""


def usage(msg):
    sys.stderr.write("af_helper: %s\nusage: python3 -m af_helper map|reduce "
                     "[--af-original] [--combine auto|true|false|FILE] JOBFILE [ARGS...]\n" % msg)
    sys.exit(2)


def load_module(path, name="telemetry_job"):
    if not os.path.isfile(path):
        raise JobError("job file %s does not exist in the image; check mapper/reducer in "
                       "/etc/analysis-tools.yml" % path)
    d = os.path.dirname(os.path.abspath(path))
    if d not in sys.path:
        sys.path.insert(0, d)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# Prebuilt encoders: json.dumps with keyword arguments builds a new encoder
# on every call.
_compact = json.JSONEncoder(separators=(",", ":")).encode
_sorted = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def encode_key(k):
    """JSON for a key: deterministic, so equal keys group in the reducer."""
    t = type(k)
    if t is str:
        return _dumps(k)
    if t is int:
        return str(k)
    return _sorted(k)


def encode_value(v):
    t = type(v)
    if t is int:
        return str(v)
    if t is str:
        return _dumps(v)
    return _compact(v)


class Output:
    """Buffers "<json key>\\t<json value>\\n" lines and writes them in batches."""

    def __init__(self, f):
        self.f = f
        self.buf = []
        self.pairs = 0

    def pair(self, k, v):
        buf = self.buf
        buf.append(encode_key(k) + "\t" + encode_value(v) + "\n")
        if len(buf) >= FLUSH_LINES:
            self.flush()

    def flush(self):
        if self.buf:
            self.pairs += len(self.buf)
            self.f.write("".join(self.buf))
            self.buf = []


class MapContext:
    """context for map(): write(k, v) emits a pair; file is the current input's key."""

    def __init__(self, write):
        self.write = write
        self.file = None


class _CombineSink:
    """The context combine() writes to: the key's values become [value]."""

    def __init__(self, coll):
        self._coll = coll

    def write(self, key, value):
        self._coll.replace(key, value)


class Collector:
    """Per-key value lists, combined as they grow (telemetry-server's Collector)."""

    def __init__(self, combine, out):
        self.combine = combine
        self.out = out
        self.values = {}  # key (or its JSON when unhashable) -> [key, [values]]
        self.sink = _CombineSink(self)

    @staticmethod
    def _slot(key):
        try:
            hash(key)
            return key
        except TypeError:
            return ("\0json", encode_key(key))

    def write(self, key, value):
        values = self.values
        try:
            entry = values[key]
        except KeyError:
            if len(values) >= MAX_KEYS:
                self.flush()
            self.values[key] = [key, [value]]
            return
        except TypeError:  # unhashable key (list, dict): slot it by its JSON
            slot = self._slot(key)
            entry = values.get(slot)
            if entry is None:
                if len(values) >= MAX_KEYS:
                    self.flush()
                self.values[slot] = [key, [value]]
                return
        vals = entry[1]
        vals.append(value)
        if len(vals) >= COMBINE_SIZE:
            self.combine(key, vals, self.sink)

    def replace(self, key, value):
        slot = self._slot(key)
        entry = self.values.get(slot)
        if entry is None:
            self.values[slot] = [key, [value]]
        else:
            entry[1] = [value]

    def flush(self):
        combine, pair = self.combine, self.out.pair
        for slot in list(self.values):
            key, vals = self.values[slot]
            if len(vals) > 1:
                combine(key, vals, self.sink)
                vals = self.values[slot][1]
            for v in vals:
                pair(key, v)
        self.values = {}


def open_input():
    path = os.environ.get("AF_INPUT", "-")
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb", buffering=READ_BUF)


def open_output():
    path = os.environ.get("AF_OUTPUT")
    if not path:
        usage("AF_OUTPUT is not set; the worker sets it to the output file's path")
    return open(path, "w", encoding="utf-8", buffering=READ_BUF)


def pick_combine(mod, mode):
    if mode == "false":
        return None
    if mode not in ("auto", "true"):
        mod = load_module(mode, "telemetry_combine")
    fn = getattr(mod, "combine", None)
    if fn is not None and not callable(fn):
        raise JobError("combine in the job module is not a function")
    if fn is None and mode != "auto":
        raise JobError("analysis-tools.yml asks for combine but the module has no combine(key, values, context)")
    return fn


def run_map(mod, combine_mode, original):
    out = Output(open_output())
    combine = None if original else pick_combine(mod, combine_mode)
    if original:
        mapper = getattr(mod, "mapper", None)
        if not callable(mapper):
            raise JobError("the script has no mapper(uuid, file, json) function (AF's original form)")
        fn = _original_mapper(mapper, out)
    else:
        fn = getattr(mod, "map", None)
        if not callable(fn):
            raise JobError("the job module has no map(key, dims, value, context) function")
    coll = Collector(combine, out) if combine else None
    ctx = MapContext(coll.write if coll else out.pair)

    files = records = 0
    fkey = None
    dims = []
    doc_id = None
    n_in_file = 0
    started = time.monotonic()
    f = open_input()
    try:
        for line in f:
            if line[0] == MARKER:
                hdr = _loads(line[1:])
                fkey, dims = hdr.get("key"), hdr.get("dims") or []
                ctx.file = fkey
                files += 1
                records += n_in_file
                n_in_file = 0
                continue
            n_in_file += 1
            # As in telemetry-server, value keeps its newline (json.loads
            # ignores it) and the line is split once, at the first tab.
            doc_id, value = line.decode("utf-8", "surrogateescape").split("\t", 1)
            fn(doc_id, dims, value, ctx)
        records += n_in_file
        n_in_file = 0
        if coll:
            coll.flush()
        out.flush()
        out.f.close()
    except Exception:
        where = ""
        if n_in_file:
            where = " on record %d of %s (document %s)" % (n_in_file, fkey, doc_id)
        sys.stderr.write("af_helper: map failed%s:\n" % where)
        traceback.print_exc()
        sys.exit(1)
    sys.stderr.write("af_helper: map done: %d files, %d records, %d pairs out in %.2fs\n"
                     % (files, records, out.pairs, time.monotonic() - started))


def _original_mapper(mapper, out):
    """Adapts AF's mapper(uuid, file, json) -> "key value" lines to map()."""

    def fn(doc_id, dims, value, ctx):
        try:
            doc = _loads(value)
        except ValueError:
            # AF's helper skipped and listed documents that were not JSON.
            sys.stderr.write("af_helper: %s: document %s is not valid JSON, skipped\n" % (ctx.file, doc_id))
            return
        res = mapper(doc_id, ctx.file, doc)
        if not res:
            return
        for l in str(res).splitlines():
            if l.strip():
                k, _, v = l.partition(" ")
                ctx.write(k, v)

    return fn


class ReduceContext:
    """telemetry-server's TextContext: the reducer's view of the result file.

    write(key, value) writes key, field_separator (a tab unless set), value
    and record_separator (a newline). writecsv(fields) writes one CSV record
    as Python's csv module does (comma-separated, a field quoted when it holds
    a comma, a double quote or a character of record_separator, quotes
    doubled), ended by record_separator; once the job sets field_separator,
    writecsv joins the fields with it instead (telemetry-server's behaviour).
    """

    def __init__(self, f):
        self._f = f
        self._field_separator = None  # None: never set by the job
        self.record_separator = "\n"
        self._csv = None  # (record_separator, csv writer)

    @property
    def field_separator(self):
        fs = self._field_separator
        return "\t" if fs is None else fs

    @field_separator.setter
    def field_separator(self, value):
        self._field_separator = value

    def write(self, key, value):
        self._f.write(str(key) + self.field_separator + str(value) + self.record_separator)

    def writeline(self, line):
        self._f.write(str(line) + self.record_separator)

    def writecsv(self, fields):
        if self._field_separator is not None:
            self._f.write(self._field_separator.join(str(x) for x in fields) + self.record_separator)
            return
        rs = self.record_separator
        if self._csv is None or self._csv[0] != rs:
            self._csv = (rs, csv.writer(self._f, lineterminator=rs))
        self._csv[1].writerow(fields)


def run_reduce(mod, combine_mode, original):
    outf = open_output()
    ctx = ReduceContext(outf)
    if original:
        red = getattr(mod, "reduce", None)

        def fn(key, values, ctx):
            if callable(red):
                ctx.writeline(red(key, values))
            else:
                for v in values:
                    ctx.writeline("%s %s" % (key, v))
        combine = None
    else:
        fn = getattr(mod, "reduce", None)
        if not callable(fn):
            raise JobError("the job module has no reduce(key, values, context) function")
        combine = pick_combine(mod, combine_mode)
        setup = getattr(mod, "setup_reduce", None)
        if callable(setup):
            setup(ctx)
    started = time.monotonic()
    keys = 0
    key = None
    try:
        # Lines arrive sorted: a key's values are consecutive. With combine
        # they are folded as they stream in (every COMBINE_SIZE values, as
        # telemetry-server's reducer did), so memory stays bounded.
        cur = None
        values = []
        sink = _ListSink(values)
        for line in open_input():
            kj, _, vj = line.partition(b"\t")
            if kj != cur:
                if cur is not None:
                    fn(key, values, ctx)
                    keys += 1
                cur = kj
                key = _loads(kj)
                values = []
                sink = _ListSink(values)
            values.append(_loads(vj))
            if combine and len(values) >= COMBINE_SIZE:
                combine(key, values, sink)
        if cur is not None:
            fn(key, values, ctx)
            keys += 1
        outf.close()
    except Exception:
        sys.stderr.write("af_helper: reduce failed on key %r:\n" % (key,))
        traceback.print_exc()
        sys.exit(1)
    sys.stderr.write("af_helper: reduce done: %d keys in %.2fs\n" % (keys, time.monotonic() - started))


class _ListSink:
    def __init__(self, acc):
        self._acc = acc

    def write(self, key, value):
        self._acc[:] = [value]


def main(argv):
    if len(argv) < 2 or argv[0] not in ("map", "reduce"):
        usage("want map or reduce and the job file")
    kind, args = argv[0], argv[1:]
    original, combine_mode = False, "auto"
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--af-original":
            original = True
        elif opt == "--combine" and args:
            combine_mode = args.pop(0)
        elif opt == "--":
            break
        else:
            usage("unknown option %s" % opt)
    if not args:
        usage("missing the job file")
    job = args[0]
    sys.argv = [job] + args[1:]
    try:
        mod = load_module(job)
    except JobError as e:
        sys.stderr.write("af_helper: %s\n" % e)
        sys.exit(1)
    except Exception:
        sys.stderr.write("af_helper: importing %s failed:\n" % job)
        traceback.print_exc()
        sys.exit(1)
    try:
        if kind == "map":
            run_map(mod, combine_mode, original)
        else:
            run_reduce(mod, combine_mode, original)
    except JobError as e:
        sys.stderr.write("af_helper: %s\n" % e)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
