package main

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/af-project/af/internal/synth"
)

// dataSpec is the shape of the benchmark's data set.
type dataSpec struct {
	// RawBytes is the wanted uncompressed size of the whole set.
	RawBytes int64
	// Files is the number of objects (a multiple of len(partitions)).
	Files int
	// HistogramSize sets the document size (see synth.Spec).
	HistogramSize int
	Seed          uint64
}

// The partitions of the data set: every channel × day is one storage
// partition, so the keys look like a few days of real telemetry.
var (
	channels = []string{"release", "beta", "aurora", "nightly"}
	days     = []string{"20131028", "20131029", "20131030", "20131031"}
)

const dataPrefix = "v2"

// docBytes measures the mean uncompressed size of a document of the
// given histogram size.
func docBytes(hist int) (float64, error) {
	const n = 200
	set, err := synth.Generate(synth.Spec{
		Prefix: dataPrefix, Reasons: []string{"saved-session"}, Channels: []string{"release"}, Versions: []string{"28.0"},
		BuildIDs: []string{"20131025030201"}, Days: []string{"20131028"}, FilesPerPartition: 1, DocsPerFile: n,
		HistogramSize: hist, Formats: []string{"gz"}, Seed: 1,
	})
	if err != nil {
		return 0, err
	}
	_, _, raw := set.Totals()
	return float64(raw) / n, nil
}

// generate makes the data set: one synth.Generate per partition, run on
// every core, merged in a fixed order so the set is the same every run.
func generate(spec dataSpec) (*synth.Set, float64, error) {
	parts := len(channels) * len(days)
	if spec.Files < parts || spec.Files%parts != 0 {
		return nil, 0, fmt.Errorf("-files %d must be a positive multiple of %d (channels × days)", spec.Files, parts)
	}
	size, err := docBytes(spec.HistogramSize)
	if err != nil {
		return nil, 0, err
	}
	perFile := int(float64(spec.RawBytes)/float64(spec.Files)/size + 0.5)
	if perFile < 1 {
		perFile = 1
	}
	sets := make([]*synth.Set, parts)
	errs := make([]error, parts)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := 0; i < parts; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sets[i], errs[i] = synth.Generate(synth.Spec{
				Prefix: dataPrefix, Reasons: []string{"saved-session"},
				Channels: []string{channels[i/len(days)]}, Versions: []string{"28.0"},
				BuildIDs: []string{"20131025030201", "20131026030201"}, Days: []string{days[i%len(days)]},
				FilesPerPartition: spec.Files / parts, DocsPerFile: perFile, HistogramSize: spec.HistogramSize,
				Formats: []string{"gz"}, Seed: spec.Seed + uint64(i),
			})
		}()
	}
	wg.Wait()
	all := &synth.Set{}
	for i, s := range sets {
		if errs[i] != nil {
			return nil, 0, fmt.Errorf("generate partition %d: %w", i, errs[i])
		}
		all.Files = append(all.Files, s.Files...)
	}
	sort.Slice(all.Files, func(a, b int) bool { return all.Files[a].Key < all.Files[b].Key })
	return all, size, nil
}

// upload puts the set into bucket.
func upload(ctx context.Context, env *env, set *synth.Set) error {
	return synth.Upload(ctx, env.minio.S3, inputBucket, set.Files)
}
