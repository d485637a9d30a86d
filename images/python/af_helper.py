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


SPEC = "/etc/analysis-tools.yml"


def check_job_file(path, field):
    """Says what is wrong when path cannot be the Python module field names.

    field is the analysis-tools.yml key that named the file (mapper,
    reducer, combine, script). A compiled program (a Go job) or a script in
    another language means the spec's language is wrong.
    """
    where = "%s: in %s" % (field, SPEC)
    if not os.path.exists(path):
        d = os.path.dirname(path) or "."
        near = ""
        try:
            names = sorted(n for n in os.listdir(d) if not n.startswith("."))
            if names:
                near = " (%s holds: %s)" % (d, ", ".join(names[:10]))
        except OSError:
            pass
        raise JobError("job file %s does not exist in the image%s; check %s, and that the "
                       "image's Dockerfile copies the file there" % (path, near, where))
    if os.path.isdir(path):
        raise JobError("job file %s is a directory, not a Python module; set %s to the module's "
                       ".py file" % (path, where))
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise JobError("job file %s cannot be read (%s); make it readable by every user "
                       "(chmod a+r) in the image" % (path, e.strerror))
    if head.startswith(b"\x7fELF"):
        raise JobError("job file %s is a compiled program, not a Python module: a Go job "
                       "(sdk/afjob) needs language: go in %s, any other executable language: binary; "
                       "or set %s to the job's .py file" % (path, SPEC, where))
    if head.startswith(b"#!") and b"python" not in head.split(b"\n", 1)[0]:
        raise JobError("job file %s is a %s script, not a Python module: set language: binary "
                       "in %s to run it as it is" % (path, head.split(b"\n", 1)[0][2:].decode("utf-8", "replace").strip(), SPEC))
    if b"\0" in head:
        raise JobError("job file %s is not text, so not a Python module; check %s" % (path, where))


def _user_frames(tb):
    """The traceback's frames without importlib's and the helper's."""
    return [fr for fr in traceback.extract_tb(tb)
            if not fr.filename.startswith("<frozen") and os.path.abspath(fr.filename) != os.path.abspath(__file__)]


def load_module(path, name="telemetry_job", field="mapper"):
    check_job_file(path, field)
    d = os.path.dirname(os.path.abspath(path))
    if d not in sys.path:
        sys.path.insert(0, d)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as e:
        # The caret lines and the exception, without importlib's frames;
        # the last line says where, so a message that keeps one line still
        # names the file and the line.
        sys.stderr.write("af_helper: %s has a syntax error:\n" % path)
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        sys.stderr.write("af_helper: fix the job file; python3 -m py_compile %s shows the same error\n" % path)
        raise JobError("%s line %s: %s: %s" % (e.filename or path, e.lineno, type(e).__name__, e.msg))
    except Exception as e:
        frames = _user_frames(e.__traceback__)
        sys.stderr.write("af_helper: importing %s failed:\nTraceback (most recent call last):\n" % path)
        sys.stderr.write("".join(traceback.format_list(frames)))
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        at = ""
        if frames:
            at = " at %s line %s" % (frames[-1].filename, frames[-1].lineno)
        hint = ""
        if isinstance(e, ImportError):
            hint = "; the image lacks a module the job imports: add it to the image (see images/README.md)"
        raise JobError("importing %s failed%s: %s: %s%s" % (path, at, type(e).__name__, e, hint))
    return mod


def check_entry(mod, path, name, args, field, original=False):
    """Returns mod's function name, or says what the job module lacks.

    args are the parameter names the helper calls it with. A module that
    has telemetry-server's functions where AF's are wanted (or the
    reverse) is told which form it is in.
    """
    fn = getattr(mod, name, None)
    want = "%s(%s)" % (name, ", ".join(args))
    if fn is None:
        have = sorted(k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")
                      and getattr(v, "__module__", None) == mod.__name__)
        hint = ""
        if not original and name == "map" and "mapper" in have:
            hint = "; it has mapper(), AF's original form: write script: in %s instead of mapper:" % SPEC
        elif original and name == "mapper" and "map" in have:
            hint = "; it has map(), telemetry-server's form: write mapper: in %s instead of script:" % SPEC
        elif have:
            hint = "; it defines %s" % ", ".join(h + "()" for h in have[:10])
        raise JobError("the job module %s (%s: in %s) has no %s function%s"
                       % (path, field, SPEC, want, hint))
    if not callable(fn):
        raise JobError("%s in the job module %s is not a function; define %s" % (name, path, want))
    try:
        import inspect
        inspect.signature(fn).bind(*args)
    except TypeError:
        raise JobError("%s%s in the job module %s cannot be called as %s; af calls it with %d "
                       "arguments" % (name, _signature(fn), path, want, len(args)))
    except ValueError:
        pass  # no signature to check (a builtin): called as it is
    return fn


def _signature(fn):
    try:
        import inspect
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(…)"


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
    path = getattr(mod, "__file__", "the job module")
    if mode not in ("auto", "true"):
        mod = load_module(mode, "telemetry_combine", "combine")
        path = mode
    fn = getattr(mod, "combine", None)
    if fn is None and mode != "auto":
        raise JobError("analysis-tools.yml asks for combine but the module has no combine(key, values, context)"
                       ": define it in %s, or set combine: auto in %s" % (path, SPEC))
    if fn is None:
        return None
    return check_entry(mod, path, "combine", ("key", "values", "context"), "combine")


def run_map(mod, combine_mode, original):
    out = Output(open_output())
    combine = None if original else pick_combine(mod, combine_mode)
    if original:
        mapper = check_entry(mod, mod.__file__, "mapper", ("uuid", "file", "json"), "script", original=True)
        fn = _original_mapper(mapper, out)
    else:
        fn = check_entry(mod, mod.__file__, "map", ("key", "dims", "value", "context"), "mapper")
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
        if red is not None:
            red = check_entry(mod, mod.__file__, "reduce", ("key", "values"), "script", original=True)

        def fn(key, values, ctx):
            if callable(red):
                ctx.writeline(red(key, values))
            else:
                for v in values:
                    ctx.writeline("%s %s" % (key, v))
        combine = None
    else:
        fn = check_entry(mod, mod.__file__, "reduce", ("key", "values", "context"), "reducer")
        combine = pick_combine(mod, combine_mode)
        if getattr(mod, "setup_reduce", None) is not None:
            check_entry(mod, mod.__file__, "setup_reduce", ("context",), "reducer")(ctx)
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
    field = "script" if original else ("mapper" if kind == "map" else "reducer")
    try:
        mod = load_module(job, field=field)
    except JobError as e:
        sys.stderr.write("af_helper: %s\n" % e)
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
