// Package synth makes synthetic telemetry: saved-session-like pings in the
// storage layout of DESIGN.md, compressed with any of the supported
// formats, with the exact counts a job over them must produce. The demo,
// the worker's integration tests and the benchmarks all run on it, so a
// test's expected result is computed from what was generated, never typed
// in by hand.
package synth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/dsnet/compress/bzip2"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/af-project/af/internal/layout"
)

// Spec says what to generate. Every combination of Reasons × Channels ×
// Versions × Days gets FilesPerPartition files of DocsPerFile documents.
type Spec struct {
	Prefix            string
	Reasons           []string // e.g. "saved-session"
	App               string   // e.g. "Firefox"
	Channels          []string
	Versions          []string
	BuildIDs          []string // one is picked per file
	Days              []string // submission dates, YYYYMMDD
	FilesPerPartition int
	DocsPerFile       int
	// Formats are the compressions used, round robin over files: "gz",
	// "xz", "lzma", "zst", "bz2" or "" (plain).
	Formats []string
	// HistogramSize scales each document (number of histograms of 40
	// buckets); 0 gives small documents of about 600 bytes.
	HistogramSize int
	// BadLineEvery inserts a line with no tab after every N documents of a
	// file (0: never), to exercise bad-line counting.
	BadLineEvery int
	Seed         uint64
}

// OSes are the values of info.OS the generator draws from, with skewed
// weights as in real Firefox telemetry.
var OSes = []string{"WINNT", "WINNT", "WINNT", "WINNT", "Darwin", "Darwin", "Linux", "Android"}

// File is one generated object.
type File struct {
	Key      string
	Body     []byte   // compressed
	Dims     []string // as stored in the key (sanitised)
	Docs     int
	BadLines int
	RawBytes int64 // uncompressed size
	// ByOS counts the file's documents by info.OS.
	ByOS map[string]int
}

// Set is what Generate made.
type Set struct {
	Files []File
}

// CountByOS sums documents by info.OS over the files for which keep
// returns true (all files when keep is nil).
func (s *Set) CountByOS(keep func(File) bool) map[string]int {
	out := map[string]int{}
	for _, f := range s.Files {
		if keep != nil && !keep(f) {
			continue
		}
		for os, n := range f.ByOS {
			out[os] += n
		}
	}
	return out
}

// Totals returns documents, compressed bytes and raw bytes over all files.
func (s *Set) Totals() (docs int, bytes, raw int64) {
	for _, f := range s.Files {
		docs += f.Docs
		bytes += int64(len(f.Body))
		raw += f.RawBytes
	}
	return docs, bytes, raw
}

// FormatOSCounts renders counts the way the example os-count job writes its
// result: one "OS<TAB>count" line per OS, sorted by OS.
func FormatOSCounts(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s\t%d\n", k, counts[k])
	}
	return b.String()
}

// Generate makes the files of spec. It is deterministic for a given seed.
func Generate(spec Spec) (*Set, error) {
	if spec.App == "" {
		spec.App = "Firefox"
	}
	if len(spec.Formats) == 0 {
		spec.Formats = []string{"gz"}
	}
	if len(spec.BuildIDs) == 0 {
		return nil, fmt.Errorf("synth: spec needs at least one build id")
	}
	if spec.FilesPerPartition <= 0 || spec.DocsPerFile < 0 {
		return nil, fmt.Errorf("synth: FilesPerPartition must be positive and DocsPerFile not negative")
	}
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	set := &Set{}
	n := 0
	for _, reason := range spec.Reasons {
		for _, ch := range spec.Channels {
			for _, ver := range spec.Versions {
				for _, day := range spec.Days {
					for i := 0; i < spec.FilesPerPartition; i++ {
						build := spec.BuildIDs[rng.IntN(len(spec.BuildIDs))]
						dims := []string{reason, spec.App, ch, ver, build, day}
						format := spec.Formats[n%len(spec.Formats)]
						n++
						f, err := makeFile(spec, rng, dims, format)
						if err != nil {
							return nil, err
						}
						set.Files = append(set.Files, f)
					}
				}
			}
		}
	}
	return set, nil
}

func uuidFrom(rng *rand.Rand) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 32)
	for i := range b {
		b[i] = hex[rng.IntN(16)]
	}
	return string(b)
}

func makeFile(spec Spec, rng *rand.Rand, dims []string, format string) (File, error) {
	stored := make([]string, len(dims))
	for i, d := range dims {
		stored[i] = layout.Sanitize(d)
	}
	f := File{
		Key:  layout.Key(spec.Prefix, dims, 2, uuidFrom(rng), format),
		Dims: stored,
		Docs: spec.DocsPerFile,
		ByOS: map[string]int{},
	}
	var raw bytes.Buffer
	for d := 0; d < spec.DocsPerFile; d++ {
		os := OSes[rng.IntN(len(OSes))]
		f.ByOS[os]++
		appendDoc(&raw, rng, dims, os, spec.HistogramSize)
		if spec.BadLineEvery > 0 && (d+1)%spec.BadLineEvery == 0 {
			raw.WriteString("this line has no tab and is not a record\n")
			f.BadLines++
		}
	}
	f.RawBytes = int64(raw.Len())
	body, err := Compress(format, raw.Bytes())
	if err != nil {
		return File{}, fmt.Errorf("synth: compress %s: %w", f.Key, err)
	}
	f.Body = body
	return f, nil
}

// appendDoc writes one `<id>\t<json>\n` line shaped like a saved-session
// ping. It appends by hand rather than through encoding/json so that a GiB
// of benchmark data is made in seconds.
func appendDoc(b *bytes.Buffer, rng *rand.Rand, dims []string, os string, hist int) {
	b.WriteString(uuidFrom(rng))
	b.WriteByte('\t')
	b.WriteString(`{"ver":2,"info":{"reason":"`)
	b.WriteString(dims[0])
	b.WriteString(`","appName":"`)
	b.WriteString(dims[1])
	b.WriteString(`","appUpdateChannel":"`)
	b.WriteString(dims[2])
	b.WriteString(`","appVersion":"`)
	b.WriteString(dims[3])
	b.WriteString(`","appBuildID":"`)
	b.WriteString(dims[4])
	b.WriteString(`","locale":"en-US","cpucount":`)
	b.WriteString(strconv.Itoa(1 + rng.IntN(16)))
	b.WriteString(`,"memsize":`)
	b.WriteString(strconv.Itoa(1024 * (1 + rng.IntN(32))))
	b.WriteString(`,"arch":"x86-64","adapterDescription":"Generic \"GPU\" {model}","OS":"`)
	b.WriteString(os)
	b.WriteString(`","version":"6.1"},"simpleMeasurements":{"uptime":`)
	b.WriteString(strconv.Itoa(rng.IntN(100000)))
	b.WriteString(`,"firstPaint":`)
	b.WriteString(strconv.Itoa(rng.IntN(5000)))
	b.WriteString(`,"sessionRestored":`)
	b.WriteString(strconv.Itoa(rng.IntN(9000)))
	b.WriteString(`},"histograms":{`)
	for h := 0; h < hist; h++ {
		if h > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"HISTOGRAM_`)
		b.WriteString(strconv.Itoa(h))
		b.WriteString(`":{"range":[1,10000],"bucket_count":40,"values":[`)
		for v := 0; v < 40; v++ {
			if v > 0 {
				b.WriteByte(',')
			}
			// Mostly zeros with a few counts, like real histograms, so the
			// data compresses about as well as real pings do.
			if rng.IntN(4) == 0 {
				b.WriteString(strconv.Itoa(rng.IntN(500)))
			} else {
				b.WriteByte('0')
			}
		}
		b.WriteString(`],"sum":`)
		b.WriteString(strconv.Itoa(rng.IntN(1 << 20)))
		b.WriteString(`}`)
	}
	b.WriteString(`},"payload":{"note":"tab\tand unicode \u00e9 inside a string","OS":"not-this-one"}}`)
	b.WriteByte('\n')
}

// Compress encodes raw in format ("gz", "xz", "lzma", "zst", "bz2", "").
func Compress(format string, raw []byte) ([]byte, error) {
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case "":
		return append([]byte(nil), raw...), nil
	case "gz":
		w, err = gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	case "xz":
		w, err = xz.NewWriter(&out)
	case "lzma":
		w, err = lzma.NewWriter(&out)
	case "zst":
		w, err = zstd.NewWriter(&out, zstd.WithEncoderConcurrency(1))
	case "bz2":
		w, err = bzip2.NewWriter(&out, &bzip2.WriterConfig{Level: 6})
	default:
		return nil, fmt.Errorf("unknown format %q (want gz, xz, lzma, zst, bz2 or empty)", format)
	}
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Upload puts every file into bucket, several at a time.
func Upload(ctx context.Context, client *s3.Client, bucket string, files []File) error {
	const parallel = 8
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range files {
		f := &files[i]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(f.Key), Body: bytes.NewReader(f.Body),
			})
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("upload s3://%s/%s: %w", bucket, f.Key, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// WriteDir writes every file under dir at its key's path, as a data dir
// laid out like the bucket (af run --local --data-dir).
func WriteDir(dir string, files []File) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := os.WriteFile(p, f.Body, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}
