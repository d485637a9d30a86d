package main

import (
	"bufio"
	gzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	kgzip "github.com/klauspost/compress/gzip"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/synth"
)

// readerKind is what the ceiling does with each object's bytes.
type readerKind string

const (
	readOnly      readerKind = "s3 read only"
	gunzipStdlib  readerKind = "compress/gzip"
	gunzipKlauspt readerKind = "klauspost/compress/gzip"
	// gunzipISAL is the worker's own gzip stage with ISA-L
	// (decompress.GzipISAL), one reader per object.
	gunzipISAL readerKind = "isa-l"
)

// ceiling reads every object of the set from MinIO with `parallel`
// goroutines and, unless kind is readOnly, gunzips it into io.Discard. It
// returns the uncompressed bytes seen (the compressed ones for readOnly)
// and the wall time.
func ceiling(ctx context.Context, client *s3.Client, set *synth.Set, kind readerKind, parallel int) (int64, time.Duration, error) {
	keys := make(chan string, len(set.Files))
	for _, f := range set.Files {
		keys <- f.Key
	}
	close(keys)
	var total atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	start := time.Now()
	for i := 0; i < parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			var zs *gzip.Reader
			var zk *kgzip.Reader
			for key := range keys {
				n, err := readOne(ctx, client, key, kind, buf, &zs, &zk)
				total.Add(n)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s %s: %w", kind, key, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start), first
}

// readOne reads one object the way kind says, reusing the goroutine's
// decoders as a long-running reader would.
func readOne(ctx context.Context, client *s3.Client, key string, kind readerKind, buf []byte, zs **gzip.Reader, zk **kgzip.Reader) (int64, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(key)})
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	src := bufio.NewReaderSize(out.Body, 256<<10)
	var r io.Reader
	switch kind {
	case readOnly:
		r = src
	case gunzipStdlib:
		if *zs == nil {
			*zs, err = gzip.NewReader(src)
		} else {
			err = (*zs).Reset(src)
		}
		r = *zs
	case gunzipKlauspt:
		if *zk == nil {
			*zk, err = kgzip.NewReader(src)
		} else {
			err = (*zk).Reset(src)
		}
		r = *zk
	case gunzipISAL:
		var o *decompress.Opener
		if o, err = decompress.NewOpener(decompress.GzipISAL); err == nil {
			var rc io.ReadCloser
			if rc, err = o.OpenFormat(key, decompress.Gzip, src); err == nil {
				defer rc.Close()
				r = rc
			}
		}
	}
	if err != nil {
		return 0, err
	}
	return io.CopyBuffer(io.Discard, onlyReader{r}, buf)
}

// onlyReader hides WriteTo so CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }
