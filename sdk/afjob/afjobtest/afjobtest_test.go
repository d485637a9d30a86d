package afjobtest_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/af-project/af/sdk/afjob"
	"github.com/af-project/af/sdk/afjob/afjobtest"
)

// countJob counts documents per info.OS, with a combine, and records the
// dims and files it saw in the key when asked.
func countJob() afjob.Job {
	sum := func(values [][]byte) (int64, error) {
		var n int64
		for _, v := range values {
			i, err := afjob.Int(v)
			if err != nil {
				return 0, err
			}
			n += i
		}
		return n, nil
	}
	return afjob.Job{
		Map: func(id string, dims []string, doc []byte, ctx *afjob.Context) error {
			os, ok := afjob.Field(doc, "info", "OS")
			if !ok {
				return ctx.Write(strings.Join(dims, "/")+" UNKNOWN", 1)
			}
			return ctx.Write(strings.Join(dims, "/")+" "+afjob.String(os), 1)
		},
		Combine: func(key []byte, values [][]byte, ctx *afjob.Context) error {
			n, err := sum(values)
			if err != nil {
				return err
			}
			return ctx.WriteRaw(key, []byte(afjob.String([]byte(itoa(n)))))
		},
		Reduce: func(key []byte, values [][]byte, ctx *afjob.Context) error {
			n, err := sum(values)
			if err != nil {
				return err
			}
			return ctx.Write(afjob.String(key), n)
		},
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestRun(t *testing.T) {
	t.Parallel()
	docs := []afjobtest.Doc{
		{File: "ss/Firefox/x.gz", Dims: []string{"ss", "Firefox"}, ID: "a", JSON: `{"info":{"OS":"WINNT"}}`},
		{ID: "b", JSON: `{"info":{"OS":"WINNT"}}`},
		{ID: "c", JSON: `{"info":{}}`},
		{File: "ss/Fennec/y.gz", Dims: []string{"ss", "Fennec"}, ID: "d", JSON: `{"info":{"OS":"Android"}}`},
	}
	tests := []struct {
		name string
		docs []afjobtest.Doc
		want string
	}{
		{"several files", docs, "ss/Fennec Android\t1\nss/Firefox UNKNOWN\t1\nss/Firefox WINNT\t2\n"},
		{"no file named", []afjobtest.Doc{{ID: "a", JSON: `{"info":{"OS":"Linux"}}`}}, " Linux\t1\n"},
		{"no documents", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := afjobtest.Run(countJob(), tt.docs)
			if err != nil || got != tt.want {
				t.Errorf("Run = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestMapCombinesAndReduceSorts(t *testing.T) {
	t.Parallel()
	var docs []afjobtest.Doc
	for i := range 120 {
		docs = append(docs, afjobtest.Doc{ID: itoa(int64(i)), JSON: `{"info":{"OS":"WINNT"}}`})
	}
	pairs, err := afjobtest.Map(countJob(), docs)
	if err != nil {
		t.Fatal(err)
	}
	// The mapper's combine folded the 120 ones.
	if want := []afjobtest.Pair{{Key: `" WINNT"`, Value: "120"}}; !slices.Equal(pairs, want) {
		t.Errorf("Map = %v, want %v", pairs, want)
	}
	out, err := afjobtest.Reduce(countJob(), []afjobtest.Pair{{`"b"`, "1"}, {`"a"`, "2"}, {`"b"`, "3"}})
	if err != nil || out != "a\t2\nb\t4\n" {
		t.Errorf("Reduce = %q, %v", out, err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	failing := countJob()
	failing.Map = func(string, []string, []byte, *afjob.Context) error { return boom }
	if _, err := afjobtest.Run(failing, []afjobtest.Doc{{ID: "a", JSON: "{}"}}); !errors.Is(err, boom) || !strings.Contains(err.Error(), "document a") {
		t.Errorf("a failing Map: %v, want boom naming the document", err)
	}
	if _, err := afjobtest.Map(countJob(), []afjobtest.Doc{{ID: "a\tb", JSON: "{}"}}); err == nil || !strings.Contains(err.Error(), "doc 0") {
		t.Errorf("an id with a tab: %v", err)
	}
	if _, err := afjobtest.Reduce(countJob(), []afjobtest.Pair{{`"a"`, "x"}}); err == nil {
		t.Error("a value that is not an int: no error")
	}
}
