// Package python_test drives the af_helper module with the host's python3
// (the same major version as the image's), covering the job API's corners
// without a container per case; images_test runs it in the real image.
package python_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/records"
)

// helper runs `python3 -m af_helper args...` over input and returns the
// output file, stderr and the exit code.
func helper(t *testing.T, job string, input []byte, stdin bool, args ...string) (out, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	jobFile := filepath.Join(dir, "job.py")
	if err := os.WriteFile(jobFile, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "JOB", jobFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", append([]string{"-m", "af_helper"}, args...)...)
	wd, _ := os.Getwd()
	outFile := filepath.Join(dir, "output")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+wd, "AF_OUTPUT="+outFile, "PYTHONDONTWRITEBYTECODE=1")
	if stdin {
		cmd.Env = append(cmd.Env, "AF_INPUT=-")
		cmd.Stdin = bytes.NewReader(input)
	} else {
		in := filepath.Join(dir, "input")
		if err := os.WriteFile(in, input, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "AF_INPUT="+in)
	}
	var e bytes.Buffer
	cmd.Stderr = &e
	err := cmd.Run()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("python3: %v (python3 is required)", err)
		}
		code = ee.ExitCode()
	}
	b, _ := os.ReadFile(outFile)
	return string(b), e.String(), code
}

// framed builds map input: one file per body.
func framed(t *testing.T, bodies ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := records.NewWriter(&b)
	for i, body := range bodies {
		if err := w.BeginFile("file"+string(rune('A'+i)), []string{"dimA", "dim" + string(rune('A'+i))}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := w.CopyLines(strings.NewReader(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	return b.Bytes()
}

func docs(n int, doc string) string {
	return strings.Repeat("id\t"+doc+"\n", n)
}

const countJob = `
import json, sys
calls = []
def map(key, dims, value, context):
    d = json.loads(value)
    context.write(d["k"], 1)
def combine(key, values, context):
    calls.append(len(values))
    context.write(key, sum(values))
def reduce(key, values, context):
    context.write(key, sum(values))
`

func TestMap(t *testing.T) {
	t.Parallel()
	in := framed(t, docs(120, `{"k":"a"}`), docs(1, `{"k":"b"}`)+docs(2, `{"k":[1,2]}`)+docs(1, `{"k":{"y":1,"x":2}}`)+docs(1, `{"k":{"x":2,"y":1}}`))
	tests := []struct {
		name  string
		job   string
		args  []string
		stdin bool
		want  string
	}{
		{"combine auto", countJob, []string{"map", "JOB"}, false,
			"\"a\"\t120\n\"b\"\t1\n[1,2]\t2\n{\"x\":2,\"y\":1}\t2\n"},
		{"combine off", countJob, []string{"map", "--combine", "false", "JOB"}, true,
			strings.Repeat("\"a\"\t1\n", 120) + "\"b\"\t1\n[1,2]\t1\n[1,2]\t1\n{\"x\":2,\"y\":1}\t1\n{\"x\":2,\"y\":1}\t1\n"},
		{"no combine in module", `
def map(key, dims, value, context):
    context.write([key, dims, value], None)
`, []string{"map", "JOB"}, false, ""},
		{"dims, key and arguments", `
import sys
def map(key, dims, value, context):
    if value.startswith('{"k":"b"'):
        context.write(key, [dims, value, sys.argv[1:], context.file])
`, []string{"map", "JOB", "--flag", "x"}, false, "\"id\"\t[[\"dimA\",\"dimB\"],\"{\\\"k\\\":\\\"b\\\"}\\n\",[\"--flag\",\"x\"],\"fileB\"]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, code := helper(t, tt.job, in, tt.stdin, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if tt.name == "no combine in module" {
				if n := strings.Count(out, "\n"); n != 125 {
					t.Errorf("%d pairs, want 125", n)
				}
				return
			}
			if out != tt.want {
				t.Errorf("output\n%q\nwant\n%q", out, tt.want)
			}
			if !strings.Contains(stderr, "map done: 2 files, 125 records") {
				t.Errorf("summary missing: %s", stderr)
			}
		})
	}
}

func TestReduce(t *testing.T) {
	t.Parallel()
	job := `
def setup_reduce(context):
    context.field_separator = ","
    context.record_separator = ";\n"
def combine(key, values, context):
    assert len(values) <= 50, len(values)
    context.write(key, sum(values))
def reduce(key, values, context):
    context.write(key, sum(values))
    context.writeline("n=%d" % len(values))
    context.writecsv([key, "x", 3])
`
	in := strings.Repeat("\"a\"\t1\n", 120) + "\"b\"\t2\n[1]\t5\n[1]\t6"
	out, stderr, code := helper(t, job, []byte(in), false, "reduce", "JOB")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// 120 values of "a", combined whenever 50 pile up: 50 -> 1, +49 -> 1, +21 -> 22 left.
	want := "a,120;\nn=22;\na,x,3;\nb,2;\nn=1;\nb,x,3;\n[1],11;\nn=2;\n[1],x,3;\n"
	if out != want {
		t.Errorf("output\n%q\nwant\n%q", out, want)
	}
}

func TestAFOriginalForm(t *testing.T) {
	t.Parallel()
	job := `
def mapper(uuid, file, json):
    return "%s %s\n%s 1\n" % (json["os"], uuid, file)
def reduce(k, v):
    return "%s has %d" % (k, len(v))
`
	in := framed(t, "u1\t{\"os\":\"WINNT\"}\nu2\tnot json\nu3\t{\"os\":\"Linux\"}\n")
	out, stderr, code := helper(t, job, in, false, "map", "--af-original", "JOB")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "\"WINNT\"\t\"u1\"\n\"fileA\"\t\"1\"\n\"Linux\"\t\"u3\"\n\"fileA\"\t\"1\"\n"
	if out != want {
		t.Errorf("map output\n%q\nwant\n%q", out, want)
	}
	if !strings.Contains(stderr, "fileA: document u2 is not valid JSON, skipped") {
		t.Errorf("bad document not reported: %s", stderr)
	}
	out, stderr, code = helper(t, job, []byte("\"Linux\"\t\"u3\"\n\"fileA\"\t\"1\"\n\"fileA\"\t\"1\"\n"), false, "reduce", "--af-original", "JOB")
	if code != 0 || out != "Linux has 1\nfileA has 2\n" {
		t.Errorf("reduce: exit %d, output %q; stderr %s", code, out, stderr)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	in := framed(t, docs(3, `{"k":"a"}`))
	tests := []struct {
		name string
		job  string
		args []string
		in   []byte
		want []string
	}{
		{"map raises", "def map(k, d, v, c):\n    raise RuntimeError('boom')\n", []string{"map", "JOB"}, in,
			[]string{"map failed on record 1 of fileA (document id)", "Traceback", "RuntimeError: boom"}},
		{"reduce raises", "def reduce(k, v, c):\n    raise ValueError('bad ' + k)\n", []string{"reduce", "JOB"}, []byte("\"z\"\t1\n"),
			[]string{"reduce failed on key 'z'", "ValueError: bad z"}},
		{"no map", "x = 1\n", []string{"map", "JOB"}, in, []string{"no map(key, dims, value, context) function"}},
		{"no reduce", "x = 1\n", []string{"reduce", "JOB"}, nil, []string{"no reduce(key, values, context) function"}},
		{"combine required", "def map(k, d, v, c): pass\n", []string{"map", "--combine", "true", "JOB"}, in, []string{"asks for combine but the module has no combine"}},
		{"import error", "import nonexistent_module_xyz\n", []string{"map", "JOB"}, in, []string{"importing", "ModuleNotFoundError"}},
		{"missing job file", "", []string{"map", "/nonexistent/job.py"}, in, []string{"job file /nonexistent/job.py does not exist"}},
		{"syntax error names the line last", "x = 1\ndef map(key dims):\n    pass\n", []string{"map", "JOB"}, in,
			[]string{"has a syntax error", "line 2\n    def map(key dims):", "python3 -m py_compile", "job.py line 2: SyntaxError: invalid syntax\n"}},
		{"import error names the module and the fix", "import os\nimport nonexistent_module_xyz\n", []string{"map", "JOB"}, in,
			[]string{"failed at ", "job.py line 2: ModuleNotFoundError: No module named 'nonexistent_module_xyz'; the image lacks a module"}},
		{"AF's form under mapper:", "def mapper(uuid, file, json): pass\n", []string{"map", "JOB"}, in,
			[]string{"(mapper: in /etc/analysis-tools.yml) has no map(key, dims, value, context) function; it has mapper(), AF's original form: write script:"}},
		{"telemetry-server's form under script:", "def map(k, d, v, c): pass\n", []string{"map", "--af-original", "JOB"}, in,
			[]string{"has no mapper(uuid, file, json) function; it has map(), telemetry-server's form: write mapper:"}},
		{"other functions listed", "def mapp(k, d, v, c): pass\n", []string{"map", "JOB"}, in, []string{"has no map(key, dims, value, context) function; it defines mapp()"}},
		{"map with the wrong arguments", "def map(key, value): pass\n", []string{"map", "JOB"}, in,
			[]string{"map(key, value) in the job module", "cannot be called as map(key, dims, value, context); af calls it with 4 arguments"}},
		{"reduce with the wrong arguments", "def reduce(key, values): pass\n", []string{"reduce", "JOB"}, nil, []string{"cannot be called as reduce(key, values, context)"}},
		{"a Go binary under language: python", "", []string{"map", "/bin/true"}, in,
			[]string{"job file /bin/true is a compiled program, not a Python module: a Go job (sdk/afjob) needs language: go in /etc/analysis-tools.yml"}},
		{"a directory", "", []string{"map", "/tmp"}, in, []string{"job file /tmp is a directory"}},
		{"a shell script", "#!/bin/sh\necho hi\n", []string{"map", "JOB"}, in, []string{"is a /bin/sh script, not a Python module: set language: binary"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, code := helper(t, tt.job, tt.in, false, tt.args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	if _, stderr, code := helper(t, "", nil, false, "shuffle", "JOB"); code != 2 || !strings.Contains(stderr, "usage") {
		t.Errorf("bad usage: exit %d, %s", code, stderr)
	}
}

// fieldReference is the Python both field tests start with: slow(doc,
// path) walks json.loads(doc) to the answer af_helper.field must give, with
// missing standing for "absent".
const fieldReference = `
import json, af_helper
missing = object()
def slow(doc, path):
    v = json.loads(doc)
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return missing
        v = v[p]
    return v
`

// runFieldScript runs fieldReference and then script with af_helper on the
// path, and fails unless the output starts with want.
func runFieldScript(t *testing.T, script, want string) {
	t.Helper()
	wd, _ := os.Getwd()
	cmd := exec.Command("python3", "-c", fieldReference+script)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+wd, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestField checks af_helper.field against json.loads on a table of
// documents and paths, and its speed advantage where the field comes first.
func TestField(t *testing.T) {
	t.Parallel()
	script := `
docs = [
    '{"ver": 2, "info": {"OS": "WINNT", "x": [1, {"OS": 0}]}, "h": {"a": "}{"}}',
    ' { "s" : "a\\"}{[" , "info" : { "O\\u0053" : "Linux" } } \n',
    '{"info": 5}',
    '{"info": {}}',
    '{}',
    '[1, 2]',
    '{"a": {"b": {"c": null}}}',
    '{"a": 1, "info": {"OS": "x", "OS": "last"}, "s": "t"}',
    '{"a": {"b": 1, "b": {"c": 2}}}',
]
paths = [("info", "OS"), ("info",), ("a", "b", "c"), ("a", "b"), ("nope",), ("s",)]
n = 0
for d in docs:
    for p in paths:
        want = slow(d, p)
        got = af_helper.field(d, *p, default=missing)
        assert got == want or (got is missing and want is missing), (d, p, got, want)
        n += 1
assert af_helper.field(b'{"info":{"OS":"b"}}', "info", "OS") == "b"
try:
    af_helper.field('{"a" 1}', "b")
    raise SystemExit("malformed JSON accepted")
except ValueError:
    pass
# A repeated top-level key: the first occurrence wins (documented).
assert af_helper.field('{"info": {"OS": "a"}, "info": {"OS": "b"}}', "info", "OS") == "a"
print("ok", n)
`
	runFieldScript(t, script, "ok 54")
}

// TestFieldRandom is a differential test of af_helper.field: random
// documents (nested objects and arrays, escaped and unicode keys, varied
// whitespace, no repeated keys) and random paths, each answer compared with
// walking json.loads. A seeded generator keeps a failure reproducible; the
// seed and the document are in the message.
func TestFieldRandom(t *testing.T) {
	t.Parallel()
	script := `
import random
rng = random.Random(20261122)
KEYS = ["info", "OS", "a", "b", "x\"y", "\u00e9t\u00e9", "k\\n", "", "ver"]
def value(depth):
    r = rng.random()
    if depth < 4 and r < 0.35:
        ks = rng.sample(KEYS, rng.randint(0, 5))
        return {k: value(depth + 1) for k in ks}
    if depth < 4 and r < 0.5:
        return [value(depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([None, True, False, 0, -1.5e3, 12345678901234567890, "s", "}{][\",", "\u2603"])
def dump(v):
    sep = rng.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")])
    s = json.dumps(v, separators=sep, ensure_ascii=rng.random() < 0.5)
    return rng.choice(["", " ", "\n\t"]) + s + rng.choice(["", "\n", "  "])
n = 0
for i in range(3000):
    top = value(0) if rng.random() < 0.1 else {k: value(1) for k in rng.sample(KEYS, rng.randint(0, 6))}
    doc = dump(top)
    for _ in range(4):
        path = tuple(rng.choice(KEYS) for _ in range(rng.randint(1, 3)))
        want = slow(doc, path)
        for d in (doc, doc.encode("utf-8")):
            got = af_helper.field(d, *path, default=missing)
            if not (got is missing and want is missing) and got != want:
                raise SystemExit("doc %d %r path %r: field gave %r, json.loads %r" % (i, doc, path, got, want))
            n += 1
print("ok", n)
`
	runFieldScript(t, script, "ok 24000")
}

// TestWriteCSV: writecsv writes CSV as Python's csv module does (commas,
// minimal quoting, quotes doubled) until the job sets field_separator, after
// which it joins the fields with it. sdk/afjob's TestWriteCSV holds the Go
// SDK to the same bytes.
func TestWriteCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, setup, fields, want string
	}{
		{"plain", "", `["a", 1, 2.5]`, "a,1,2.5\n"},
		{"quoting", "", `["a,b", 'say "hi"', "two\nlines", "cr\rkept", " lead", ""]`,
			"\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",cr\rkept, lead,\n"},
		{"None and booleans", "", `[None, True, "x"]`, ",True,x\n"},
		{"one empty field", "", `[""]`, "\"\"\n"},
		{"no fields", "", `[]`, "\n"},
		{"record separator chars are quoted", `context.record_separator = ";\n"`, `["a;b", "c"]`, "\"a;b\",c;\n"},
		{"field_separator set: joined", `context.field_separator = "\t"`, `["a,b", 'q"', 3]`, "a,b\tq\"\t3\n"},
		{"field_separator comma: joined, unquoted", `context.field_separator = ","`, `["a,b", 3]`, "a,b,3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := "def setup_reduce(context):\n    " + tt.setup + "\n    pass\n" +
				"def reduce(key, values, context):\n    context.writecsv(" + tt.fields + ")\n"
			out, stderr, code := helper(t, job, []byte("\"k\"\t1\n"), false, "reduce", "JOB")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if out != tt.want {
				t.Errorf("writecsv(%s) wrote %q, want %q", tt.fields, out, tt.want)
			}
		})
	}
}
