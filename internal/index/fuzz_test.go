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

var (
	hiveOnce   sync.Once
	hiveDB     *DB
	hiveKeys   []string
	hiveSchema layout.Schema
	hiveErr    error
)

// FuzzQueryKeyValue is FuzzQuery over key=value directories, whose values
// may hold "-" and "." (both sorting below "/") and whose keys start with
// "dt=": the skip scan must seek past the key and find every value.
func FuzzQueryKeyValue(f *testing.F) {
	f.Add(uint8(0), uint8(2), "2024-01", "2024-01-01", "")
	f.Add(uint8(0), uint8(1), "2024", "2024-01-01", "2024.01")
	f.Add(uint8(1), uint8(3), "03", "", "03-")
	f.Add(uint8(1), uint8(2), "0", "03.5", "")
	f.Add(uint8(0), uint8(3), "", "", "2024-01")
	f.Fuzz(func(t *testing.T, level, kind uint8, a, b, c string) {
		hiveOnce.Do(func() {
			hiveSchema = layout.Schema{Fields: []string{"dt", "hour"}, Places: []layout.Place{layout.InKeyValue, layout.InKeyValue}}
			m := &memLister{pageSize: 7}
			n := 0
			for _, dt := range []string{"2024", "2024-01", "2024-01-01", "2024-01-01-", "2024.01", "2024_01", "2024-01-02", "2025"} {
				for _, h := range []string{"0", "03", "03.5", "03-x", "03_x", "1", "23"} {
					k := hiveSchema.KeyFor("", []string{dt, h}, "part-0.json")
					m.put(k, 1, md5ish(n), t0)
					hiveKeys = append(hiveKeys, k)
					n++
				}
			}
			dir, err := os.MkdirTemp("", "af-index-fuzz-")
			if err != nil {
				hiveErr = err
				return
			}
			hiveDB, hiveErr = Open(filepath.Join(dir, "fuzz.db"), Options{})
			if hiveErr == nil {
				_, hiveErr = hiveDB.Build(context.Background(), m, "b", "", hiveSchema, nil)
			}
		})
		if hiveErr != nil {
			t.Fatal(hiveErr)
		}
		flt, err := filter.Parse("f", []byte(`{"version":1,"dimensions":[{"field_name":"dt","allowed_values":"*"},{"field_name":"hour","allowed_values":"*"}]}`), hiveSchema)
		if err != nil {
			t.Fatal(err)
		}
		d := &flt.Dims[int(level)%2]
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
		got, _ := collect(t, hiveDB, flt)
		var want []string
		for _, k := range hiveKeys {
			if dims, err := hiveSchema.Parse("", k); err == nil && flt.Match(dims) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(keys(got), want) {
			t.Fatalf("dimension %d %+v:\n got %q\nwant %q", int(level)%2, *d, keys(got), want)
		}
	})
}
