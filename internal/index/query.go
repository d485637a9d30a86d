package index

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
)

// Object is one indexed input file. A query cuts the strings and Dims of
// many Objects from shared blocks of memory, so keeping one Object keeps
// its neighbours' bytes too; copy what you keep if that matters.
type Object struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
	// Dims are its dimension values in schema order.
	Dims []string
}

// QueryStats says what a query selected and how much of the index it read.
type QueryStats struct {
	Files int
	Bytes int64
	// Seeks and Reads count cursor positionings and keys read: with
	// pruning they stay far below the number of indexed objects.
	Seeks, Reads int
	Duration     time.Duration
}

// Query calls fn for every object the filter selects, in key order, and
// stops at fn's first error (which it returns). The filter must be over
// the index's schema. fn runs inside a read transaction, so it sees one
// consistent index even while a build commits batches.
func (db *DB) Query(ctx context.Context, f *filter.Filter, fn func(Object) error) (QueryStats, error) {
	start := db.clock.Now()
	var st QueryStats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		src, err := db.builtSource(tx)
		if err != nil {
			return err
		}
		if len(f.Dims) != len(src.schema.Fields) {
			return fmt.Errorf("filter %s has %d dimensions; the index at %s has %d (%s)", f.Name, len(f.Dims), db.path, len(src.schema.Fields), src.schema)
		}
		for i, d := range f.Dims {
			if d.Field != src.schema.Fields[i] {
				return fmt.Errorf("filter %s: dimension %d is %q; the index at %s has %q there (%s)", f.Name, i+1, d.Field, db.path, src.schema.Fields[i], src.schema)
			}
		}
		s := newScanner(ctx, tx.Bucket(objectsBucket).Cursor(), f, src, fn, &st)
		return s.level(0, 0)
	})
	st.Duration = db.clock.Now().Sub(start)
	return st, err
}

// scanner is one query's skip scan. buf holds the current key prefix: the
// values chosen for the dimensions above the current level, each followed
// by its separator.
type scanner struct {
	ctx     context.Context
	c       *bolt.Cursor
	dims    []filter.Dimension
	sets    [][]string // per level, a Set's values in key order (v+sep)
	schema  layout.Schema
	leads   []string // per level, what comes before the value ("dt=")
	seps    []byte   // per level, the separator after the value
	anyFrom int      // from this level down every dimension is Any
	prefix  string
	fn      func(Object) error
	st      *QueryStats
	buf     []byte
	ndims   int
	strSlab []byte
	dimSlab []string
}

func newScanner(ctx context.Context, c *bolt.Cursor, f *filter.Filter, src source, fn func(Object) error, st *QueryStats) *scanner {
	s := &scanner{ctx: ctx, c: c, dims: f.Dims, schema: src.schema, ndims: len(f.Dims), prefix: src.prefix, fn: fn, st: st}
	s.sets = make([][]string, len(f.Dims))
	s.leads = make([]string, len(f.Dims))
	s.seps = make([]byte, len(f.Dims))
	for i := range f.Dims {
		s.leads[i], s.seps[i] = src.schema.Part(i)
	}
	s.anyFrom = len(f.Dims)
	for i := len(f.Dims) - 1; i >= 0 && f.Dims[i].Kind == filter.Any; i-- {
		s.anyFrom = i
	}
	for i, d := range f.Dims {
		if d.Kind == filter.Set {
			sep := s.sep(i)
			// Only values a stored key can hold can match; the others
			// (with a separator inside, say) would mislead the seeks.
			vals := slices.DeleteFunc(slices.Clone(d.Values), func(v string) bool {
				return !src.schema.Storable(i, v)
			})
			// The index is in key order, where v is followed by its
			// separator: "22/" sorts after "22.0/" although "22" < "22.0".
			slices.SortFunc(vals, func(a, b string) int { return strings.Compare(a+string(sep), b+string(sep)) })
			s.sets[i] = vals
		}
	}
	return s
}

func (s *scanner) sep(level int) byte { return s.seps[level] }

func (s *scanner) seek(k []byte) ([]byte, []byte) {
	s.st.Seeks++
	return s.c.Seek(k)
}

// valueAt returns the value of the current level in k (which starts with
// buf[:plen]) or nil if k does not continue with lead, a value and
// separator.
func valueAt(k []byte, plen int, lead string, sep byte) []byte {
	rest := k[plen:]
	if len(rest) < len(lead) || string(rest[:len(lead)]) != lead {
		return nil
	}
	rest = rest[len(lead):]
	j := bytes.IndexByte(rest, sep)
	if j <= 0 {
		return nil
	}
	return rest[:j]
}

// level visits the objects under buf[:plen] whose values from level i on
// pass the filter.
func (s *scanner) level(i, plen int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if i >= s.anyFrom {
		return s.all(plen)
	}
	d := &s.dims[i]
	sep, lead := s.sep(i), s.leads[i]
	if d.Kind == filter.Set {
		return s.set(i, plen, sep)
	}
	// Any or Range: walk the distinct values from the lowest possible one,
	// skipping each value's whole subtree with one seek.
	s.buf = append(s.buf[:plen], lead...)
	if d.Kind == filter.Range && d.HasMin {
		s.buf = append(s.buf, d.Min...)
	}
	var stop []byte
	if d.Kind == filter.Range && d.HasMax {
		// Every value <= Max sorts, followed by its separator, at or
		// before this key. The exceptions to Max+sep are values that are
		// a prefix of Max ending where Max has a byte below sep: "22/"
		// sorts after "22.0/" though "22" < "22.0". The shortest such
		// prefix, followed by sep, is the bound.
		m := d.Max
		for j := 0; j < len(m); j++ {
			if m[j] < sep {
				m = m[:j]
				break
			}
		}
		stop = append(append(append(append([]byte(nil), s.buf[:plen]...), lead...), m...), sep)
	}
	k, _ := s.seek(s.buf)
	for k != nil && bytes.HasPrefix(k, s.buf[:plen]) {
		v := valueAt(k, plen, lead, sep)
		if v == nil {
			return fmt.Errorf("index: damaged key %q", k)
		}
		end := plen + len(lead) + len(v) + 1
		if stop != nil && bytes.Compare(k[:end], stop) > 0 {
			return nil
		}
		s.buf = append(s.buf[:plen], k[plen:end]...)
		if d.Allows(string(v)) {
			if err := s.level(i+1, end); err != nil {
				return err
			}
		}
		// Past every key that has this value: the byte after sep.
		s.buf = append(s.buf[:end-1], sep+1)
		k, _ = s.seek(s.buf)
	}
	return nil
}

// set visits a Set's values by leapfrogging: seek to the next wanted
// value; if the index has a later value there, jump ahead in the set.
func (s *scanner) set(i, plen int, sep byte) error {
	vals := s.sets[i]
	lead := s.leads[i]
	for j := 0; j < len(vals); {
		s.buf = append(append(append(s.buf[:plen], lead...), vals[j]...), sep)
		end := len(s.buf)
		k, _ := s.seek(s.buf)
		if k == nil || !bytes.HasPrefix(k, s.buf[:plen]) {
			return nil
		}
		if bytes.HasPrefix(k, s.buf[:end]) {
			if err := s.level(i+1, end); err != nil {
				return err
			}
			j++
			continue
		}
		v := valueAt(k, plen, lead, sep)
		if v == nil {
			return fmt.Errorf("index: damaged key %q", k)
		}
		found := string(k[plen+len(lead) : plen+len(lead)+len(v)+1])
		// found sorts after vals[j]+sep, so at least vals[j] is passed;
		// the max guards the loop's progress all the same.
		j += max(1, countBefore(vals[j:], found, sep))
	}
	return nil
}

// countBefore returns how many of vals (in key order) sort before found, a
// value with its separator.
func countBefore(vals []string, found string, sep byte) int {
	n, _ := slices.BinarySearchFunc(vals, found, func(v, f string) int {
		return strings.Compare(v+string(sep), f)
	})
	return n
}

// all visits every object under buf[:plen].
func (s *scanner) all(plen int) error {
	p := s.buf[:plen]
	for k, v := s.seek(p); k != nil && bytes.HasPrefix(k, p); k, v = s.c.Next() {
		s.st.Reads++
		o, err := s.object(k, v)
		if err != nil {
			return err
		}
		s.st.Files++
		s.st.Bytes += o.Size
		if err := s.fn(o); err != nil {
			return err
		}
		if s.st.Files%4096 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) object(k, v []byte) (Object, error) {
	size, md5, etag, ms, err := decodeRaw(v)
	if err != nil {
		return Object{}, fmt.Errorf("index: key %q: %w", k, err)
	}
	// A "*" query makes a million Objects, so their strings are cut from
	// shared slabs rather than allocated one by one: the key and the ETag
	// share one string, from a byte slab that is only ever appended to
	// (so the bytes under a string never change), and the dimension
	// values are substrings of it.
	n := len(s.prefix) + len(k) + 2*len(md5) + len(etag)
	if cap(s.strSlab)-len(s.strSlab) < n {
		s.strSlab = make([]byte, 0, max(slabBytes, n))
	}
	start := len(s.strSlab)
	b := append(append(s.strSlab, s.prefix...), k...)
	if md5 != nil {
		b = hex.AppendEncode(b, md5)
	} else {
		b = append(b, etag...)
	}
	s.strSlab = b
	str := unsafe.String(&b[start], n)
	keyLen := len(s.prefix) + len(k)
	if len(s.dimSlab) < s.ndims {
		s.dimSlab = make([]string, s.ndims*512)
	}
	dims := s.dimSlab[:0:s.ndims]
	s.dimSlab = s.dimSlab[s.ndims:]
	return Object{
		Key: str[:keyLen], Size: size, ETag: str[keyLen:], LastModified: time.UnixMilli(ms).UTC(),
		Dims: s.schema.SplitStored(str[len(s.prefix):keyLen], dims),
	}, nil
}

// slabBytes is the size of the byte slabs Objects' strings are cut from.
const slabBytes = 1 << 20
