package index

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
)

var (
	fuzzOnce sync.Once
	fuzzDB   *DB
	fuzzList *memLister
	fuzzErr  error
	fuzzDir  string
)

// FuzzQuery checks the skip scan against matching every key, for
// arbitrary bounds and set values on any one dimension of an index whose
// values are prefixes of each other around "." and "/".
func FuzzQuery(f *testing.F) {
	f.Add(uint8(3), uint8(2), "22", "22.0", "")
	f.Add(uint8(3), uint8(1), "22.", "3", "220")
	f.Add(uint8(2), uint8(2), "nightly", "nightly.x", "")
	f.Add(uint8(5), uint8(2), "2014030", "20140308", "")
	f.Add(uint8(0), uint8(1), "saved", "saved_session", "saved_session2")
	f.Add(uint8(4), uint8(3), "2014022", "", "")
	f.Add(uint8(0), uint8(1), "saved_session/Firefox", "idle_daily", "")
	f.Add(uint8(2), uint8(2), "0", "nightly ", "")
	f.Fuzz(func(t *testing.T, level, kind uint8, a, b, c string) {
		fuzzOnce.Do(func() {
			fuzzList = tricky()
			dir, err := os.MkdirTemp("", "af-index-fuzz-")
			if err != nil {
				fuzzErr = err
				return
			}
			fuzzDir = dir
			fuzzDB, fuzzErr = Open(filepath.Join(dir, "fuzz.db"), Options{})
			if fuzzErr == nil {
				_, fuzzErr = fuzzDB.Build(context.Background(), fuzzList, "b", "", layout.Telemetry(), nil)
			}
		})
		if fuzzErr != nil {
			t.Fatal(fuzzErr)
		}
		flt := mustFilter(t)
		d := &flt.Dims[int(level)%len(flt.Dims)]
		switch kind % 4 {
		case 1:
			vals := []string{a, b, c}
			slices.Sort(vals)
			d.Kind, d.Values = filter.Set, slices.Compact(vals)
		case 2:
			if a > b {
				a, b = b, a
			}
			d.Kind, d.Min, d.Max, d.HasMin, d.HasMax = filter.Range, a, b, true, true
		case 3:
			d.Kind, d.Min, d.HasMin = filter.Range, a, true
			if c != "" {
				d.Kind, d.Min, d.HasMin, d.Max, d.HasMax = filter.Range, "", false, c, true
			}
		}
		got, _ := collect(t, fuzzDB, flt)
		if want := brute(t, fuzzList.objs, "", flt); !slices.Equal(keys(got), want) {
			t.Fatalf("dimension %d %+v:\n got %q\nwant %q", int(level)%len(flt.Dims), *d, keys(got), want)
		}
	})
}
