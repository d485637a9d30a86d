package synth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/layout"
)

func TestGenerateCountsMatchDocuments(t *testing.T) {
	t.Parallel()
	set, err := Generate(Spec{
		Reasons: []string{"saved-session"}, Channels: []string{"nightly", "beta"},
		Versions: []string{"28.0a1"}, BuildIDs: []string{"20131029030201"},
		Days: []string{"20131029", "20131030"}, FilesPerPartition: 2, DocsPerFile: 25,
		Formats: []string{"gz", "xz", "lzma", "zst", "bz2", ""}, HistogramSize: 3, BadLineEvery: 10, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(set.Files), 2*2*2; got != want {
		t.Fatalf("files = %d, want %d", got, want)
	}
	schema := layout.Telemetry()
	seen := map[string]int{}
	for _, f := range set.Files {
		dims, err := schema.Parse("", f.Key)
		if err != nil {
			t.Fatalf("key %s does not fit the layout: %v", f.Key, err)
		}
		if strings.Join(dims, "/") != strings.Join(f.Dims, "/") {
			t.Errorf("dims of %s = %v, want %v", f.Key, dims, f.Dims)
		}
		r, err := decompress.Open(f.Key, bytes.NewReader(f.Body))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var raw int64
		bad := 0
		for sc.Scan() {
			line := sc.Bytes()
			raw += int64(len(line)) + 1
			id, doc, ok := bytes.Cut(line, []byte("\t"))
			if !ok {
				bad++
				continue
			}
			if len(id) != 32 {
				t.Errorf("%s: id %q", f.Key, id)
			}
			var v struct {
				Info struct{ OS string } `json:"info"`
			}
			if err := json.Unmarshal(doc, &v); err != nil {
				t.Fatalf("%s: bad json %v: %s", f.Key, err, doc)
			}
			seen[v.Info.OS]++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if raw != f.RawBytes || bad != f.BadLines {
			t.Errorf("%s: raw %d bad %d, want %d %d", f.Key, raw, bad, f.RawBytes, f.BadLines)
		}
	}
	want := set.CountByOS(nil)
	if FormatOSCounts(seen) != FormatOSCounts(want) {
		t.Fatalf("decoded counts\n%s\nwant\n%s", FormatOSCounts(seen), FormatOSCounts(want))
	}
	docs, _, _ := set.Totals()
	if docs != 8*25 {
		t.Fatalf("docs = %d", docs)
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	spec := Spec{Reasons: []string{"idle-daily"}, Channels: []string{"release"}, Versions: []string{"27.0"},
		BuildIDs: []string{"20140101000000", "20140102000000"}, Days: []string{"20140308"}, FilesPerPartition: 3, DocsPerFile: 5, Seed: 42}
	a, err := Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(spec)
	for i := range a.Files {
		if a.Files[i].Key != b.Files[i].Key || !bytes.Equal(a.Files[i].Body, b.Files[i].Body) {
			t.Fatalf("file %d differs between runs with the same seed", i)
		}
	}
}
