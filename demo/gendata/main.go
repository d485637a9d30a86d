// Command gendata writes the demo's sample telemetry into S3 in
// telemetry-server's layout (several days, channels, OSes; gz, xz and lzma
// files), and prints what the os-count job must answer for a filter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/synth"
)

func main() {
	bucket := flag.String("bucket", "telemetry", "bucket to write to (created if missing)")
	prefix := flag.String("prefix", "", "key prefix")
	filterPath := flag.String("expect", "filters/Filter.json", "write the expected os-count result for this filter")
	expectOut := flag.String("expect-out", "", "file for the expected result (default: stdout)")
	docs := flag.Int("docs", 200, "documents per file")
	dataDir := flag.String("data-dir", "", "write the files under this directory (a file's key is its path there, for af run --local --data-dir) instead of S3")
	flag.Parse()
	if err := run(*bucket, *prefix, *filterPath, *expectOut, *docs, *dataDir); err != nil {
		fmt.Fprintf(os.Stderr, "gendata: %v\n", err)
		os.Exit(1)
	}
}

func run(bucket, prefix, filterPath, expectOut string, docs int, dataDir string) error {
	ctx := context.Background()
	set, err := synth.Generate(synth.Spec{
		Prefix:            prefix,
		Reasons:           []string{"saved-session", "idle-daily", "android-anr-report"},
		Channels:          []string{"nightly", "aurora", "beta", "release"},
		Versions:          []string{"29.0a1", "30.0a1"},
		BuildIDs:          []string{"20140115030203", "20140227030201", "20140301030201", "20140305030202"},
		Days:              []string{"20140307", "20140308", "20140309", "20140310"},
		FilesPerPartition: 2, DocsPerFile: docs, HistogramSize: 8,
		Formats: []string{"gz", "xz", "lzma"}, Seed: 2014,
	})
	if err != nil {
		return err
	}
	where := "s3://" + bucket + "/" + prefix
	if dataDir != "" {
		if err := synth.WriteDir(dataDir, set.Files); err != nil {
			return err
		}
		where = dataDir
	} else {
		cfg, err := awsconf.Load(ctx, awsconf.Options{})
		if err != nil {
			return err
		}
		client := awsconf.S3(cfg)
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil && !alreadyOwned(err) {
			return fmt.Errorf("create bucket %s: %w", bucket, err)
		}
		if err := synth.Upload(ctx, client, bucket, set.Files); err != nil {
			return err
		}
	}
	n, compressed, raw := set.Totals()
	fmt.Fprintf(os.Stderr, "gendata: wrote %d files (%d documents, %d bytes compressed, %d raw) to %s\n", len(set.Files), n, compressed, raw, where)

	schema := layout.Telemetry()
	f, err := filter.ParseFile(filterPath, schema)
	if err != nil {
		return err
	}
	selected := 0
	counts := set.CountByOS(func(file synth.File) bool {
		if f.Match(file.Dims) {
			selected++
			return true
		}
		return false
	})
	fmt.Fprintf(os.Stderr, "gendata: %s selects %d of them\n", filterPath, selected)
	out := os.Stdout
	if expectOut != "" {
		if out, err = os.Create(expectOut); err != nil {
			return err
		}
		defer out.Close()
	}
	_, err = fmt.Fprint(out, synth.FormatOSCounts(counts))
	return err
}

func alreadyOwned(err error) bool {
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	return errors.As(err, &owned) || errors.As(err, &exists)
}
