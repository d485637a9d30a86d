package afjob

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/af-project/af/sdk/records"
)

func countJob(withCombine bool) Job {
	sum := func(key []byte, values [][]byte, ctx *Context) error {
		var n int64
		for _, v := range values {
			i, err := Int(v)
			if err != nil {
				return err
			}
			n += i
		}
		return ctx.Write(String(key), n)
	}
	j := Job{
		Map: func(id string, dims []string, doc []byte, ctx *Context) error {
			os, ok := Field(doc, "info", "OS")
			if !ok {
				return ctx.Write("UNKNOWN", 1)
			}
			return ctx.Write(String(os), 1)
		},
		Reduce: sum,
	}
	if withCombine {
		j.Combine = sum
	}
	return j
}

func framed(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := records.NewWriter(&b)
	for _, k := range []string{"f1", "f2", "f3"} {
		body, ok := files[k]
		if !ok {
			continue
		}
		if err := w.BeginFile(k, []string{"saved_session", k}); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := w.CopyLines(strings.NewReader(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func docs(oses ...string) string {
	var b strings.Builder
	for i, os := range oses {
		fmt.Fprintf(&b, "id%d\t{\"ver\":2,\"x\":{\"OS\":\"no\"},\"info\":{\"appName\":\"Firefox\",\"OS\":%q}}\n", i, os)
	}
	return b.String()
}

func TestMapReduce(t *testing.T) {
	t.Parallel()
	many := make([]string, 0, 230)
	for i := range 230 {
		many = append(many, []string{"WINNT", "Linux", "Darwin"}[i%3])
	}
	in := framed(t, map[string]string{
		"f1": docs(many...),
		"f2": docs("Linux") + "id9\t{\"info\":{}}\n",
		"f3": "",
	})
	for _, combine := range []bool{false, true} {
		t.Run(fmt.Sprint("combine=", combine), func(t *testing.T) {
			t.Parallel()
			job := countJob(combine)
			var mapOut bytes.Buffer
			st, err := Run(job, "map", bytes.NewReader(in), &mapOut)
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 3 || st.Records != 232 {
				t.Errorf("stats = %+v, want 3 files, 232 records", st)
			}
			lines := strings.Split(strings.TrimSuffix(mapOut.String(), "\n"), "\n")
			if combine && len(lines) != 4 || !combine && len(lines) != 232 {
				t.Errorf("combine=%v: %d output pairs", combine, len(lines))
			}
			// Sort the pairs by key as the worker does, then reduce.
			sorted := sortLines(lines)
			var result bytes.Buffer
			if _, err := Run(job, "reduce", strings.NewReader(sorted), &result); err != nil {
				t.Fatal(err)
			}
			want := "Darwin\t76\nLinux\t78\nUNKNOWN\t1\nWINNT\t77\n"
			if result.String() != want {
				t.Errorf("result = %q, want %q", result.String(), want)
			}
		})
	}
}

func sortLines(lines []string) string {
	type kv struct{ k, line string }
	var s []kv
	for _, l := range lines {
		k, _, _ := strings.Cut(l, "\t")
		s = append(s, kv{k, l})
	}
	for i := 1; i < len(s); i++ { // insertion sort: stable, small inputs
		for j := i; j > 0 && s[j].k < s[j-1].k; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	var b strings.Builder
	for _, x := range s {
		b.WriteString(x.line + "\n")
	}
	return b.String()
}

func TestReduceContext(t *testing.T) {
	t.Parallel()
	job := Job{
		Map: func(string, []string, []byte, *Context) error { return nil },
		SetupReduce: func(ctx *Context) error {
			ctx.FieldSeparator, ctx.RecordSeparator = ",", ";\n"
			return nil
		},
		Reduce: func(key []byte, values [][]byte, ctx *Context) error {
			ctx.Write(json.RawMessage(key), len(values))
			ctx.WriteLine("line " + string(key))
			return ctx.WriteCSV(String(key), []int{1, 2}, "x")
		},
	}
	var out bytes.Buffer
	if _, err := Run(job, "reduce", strings.NewReader("\"a\"\t1\n\"a\"\t2\n[1]\t3"), &out); err != nil {
		t.Fatal(err)
	}
	want := "a,2;\nline \"a\";\na,[1,2],x;\n[1],1;\nline [1];\n[1],[1,2],x;\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	in := framed(t, map[string]string{"f1": docs("A", "B")})
	boom := errors.New("boom")
	tests := []struct {
		name string
		job  Job
		kind string
		in   string
		want string
	}{
		{"map error names the record", Job{Map: func(id string, _ []string, _ []byte, _ *Context) error {
			if id == "id1" {
				return boom
			}
			return nil
		}, Reduce: countJob(false).Reduce}, "map", string(in), "map, record 2 of f1 (document id1): boom"},
		{"panic", Job{Map: func(string, []string, []byte, *Context) error { panic("kaputt") }, Reduce: countJob(false).Reduce}, "map", string(in), "panic: kaputt"},
		{"bad kind", countJob(false), "shuffle", "", `unknown task kind "shuffle" (the first argument, or AF_TASK_KIND): want map or reduce`},
		{"no map", Job{Reduce: countJob(false).Reduce}, "map", "", "no Map function: set Job.Map in the afjob.Main call, or point mapper: in /etc/analysis-tools.yml"},
		{"no reduce", Job{Map: countJob(false).Map}, "reduce", "", "no Reduce function: set Job.Reduce"},
		{"no kind", countJob(false), "", "", "no task kind: af runs a language: go job as `BINARY map`"},
		{"bad reduce line", countJob(false), "reduce", "\"a\"\t1\nnotab\n", "reduce input line 2: no tab"},
		{"bad value", countJob(false), "reduce", "\"a\"\tnope\n", "reduce, key \"a\": strconv.ParseInt"},
		{"bad framing", countJob(false), "map", "no tab here\n", "records line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(tt.job, tt.kind, strings.NewReader(tt.in), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEncodeMatchesJSON(t *testing.T) {
	t.Parallel()
	for _, v := range []any{"WINNT", "a<b", "é", "tab\t", 42, int64(-7), []int{1}, map[string]int{"b": 1, "a": 2}, 1.5, nil} {
		got, err := encode(v)
		want, _ := json.Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encode(%#v) = %s, %v; want %s", v, got, err, want)
		}
	}
}

// BenchmarkMap measures the SDK's map path (decode framing, Field, combine)
// over 40 KB telemetry-like documents, in MB/s of framed input.
func BenchmarkMap(b *testing.B) {
	doc := telemetryDoc(300)
	var body bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&body, "id%d\t%s\n", i, doc)
	}
	var in bytes.Buffer
	w := records.NewWriter(&in)
	w.BeginFile("k", []string{"a"})
	w.CopyLines(&body, nil)
	w.Flush()
	job := countJob(true)
	b.SetBytes(int64(in.Len()))
	for b.Loop() {
		if _, err := Run(job, "map", bytes.NewReader(in.Bytes()), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteCSV: WriteCSV writes the bytes af_helper's writecsv (Python's csv
// module) writes for the same fields (images/python's TestWriteCSV), and
// joins the fields once FieldSeparator is set.
func TestWriteCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fs, rs   string
		fields   []any
		want     string
		writeOut string // what Write("k", 1) writes with the same separators
	}{
		{"plain", "", "\n", []any{"a", 1, 2.5}, "a,1,2.5\n", "k\t1\n"},
		{"quoting", "", "\n", []any{"a,b", `say "hi"`, "two\nlines", "cr\rkept", " lead", ""},
			"\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",cr\rkept, lead,\n", "k\t1\n"},
		{"one empty field", "", "\n", []any{""}, "\"\"\n", "k\t1\n"},
		{"no fields", "", "\n", nil, "\n", "k\t1\n"},
		{"record separator chars are quoted", "", ";\n", []any{"a;b", "c"}, "\"a;b\",c;\n", "k\t1;\n"},
		{"field separator set: joined", "\t", "\n", []any{"a,b", `q"`, 3}, "a,b\tq\"\t3\n", "k\t1\n"},
		{"field separator comma: joined, unquoted", ",", "\n", []any{"a,b", 3}, "a,b,3\n", "k,1\n"},
		{"JSON values", "", "\n", []any{[]int{1, 2}, json.RawMessage(`"s"`)}, "\"[1,2]\",s\n", "k\t1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := Job{
				Map: func(string, []string, []byte, *Context) error { return nil },
				SetupReduce: func(ctx *Context) error {
					ctx.FieldSeparator, ctx.RecordSeparator = tt.fs, tt.rs
					return nil
				},
				Reduce: func(key []byte, values [][]byte, ctx *Context) error {
					if err := ctx.WriteCSV(tt.fields...); err != nil {
						return err
					}
					return ctx.Write("k", 1)
				},
			}
			var out bytes.Buffer
			if _, err := Run(job, "reduce", strings.NewReader("\"k\"\t1\n"), &out); err != nil {
				t.Fatal(err)
			}
			if want := tt.want + tt.writeOut; out.String() != want {
				t.Errorf("WriteCSV(%#v) then Write wrote %q, want %q", tt.fields, out.String(), want)
			}
		})
	}
}

func TestTaskKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		env, want string
	}{
		{[]string{"map"}, "", "map"},
		{[]string{"reduce", "--x"}, "map", "reduce"},
		{[]string{"--x", "1"}, "reduce", "reduce"}, // language: binary: the spec's arguments come first
		{[]string{"shuffle"}, "", "shuffle"},
		{nil, "", ""},
	} {
		if got := taskKind(tc.args, tc.env); got != tc.want {
			t.Errorf("taskKind(%q, %q) = %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
}
