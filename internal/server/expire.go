package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/af-project/af/internal/queue"
)

// Expiry: af serve deletes graphs, tasks, runs and artifacts past their
// expiry (queue.Sweep), every expire_every, in batches of expire_batch
// tasks. Each batch's artifacts (everything under <prefix><taskId>/ in the
// artifact bucket) are deleted before its records, so a crash between the
// two leaves records the next sweep deletes again, never objects no record
// points to. A graph is kept artifact_grace + artifact_put_ttl after it
// resolved even when expired, since its runs' last uploads may still
// arrive until then; createArtifact refuses runs of expired tasks.

// maxDeleteObjects is S3's limit of keys per DeleteObjects call.
const maxDeleteObjects = 1000

// afterer is a clock with timers (the fake clock of tests has them).
type afterer interface {
	After(d time.Duration) <-chan time.Time
}

// after waits on the server's clock when it has timers, else the wall
// clock's.
func (s *Server) after(d time.Duration) <-chan time.Time {
	if a, ok := s.clock.(afterer); ok {
		return a.After(d)
	}
	return time.After(d)
}

// expireLoop sweeps every expire_every until ctx ends.
func (s *Server) expireLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.after(time.Duration(s.cfg.ExpireEvery)):
		}
		rep, err := s.SweepExpired(ctx)
		if s.onSweep != nil {
			s.onSweep(rep, err)
		}
	}
}

// SweepExpired runs one sweep now and logs what it deleted.
func (s *Server) SweepExpired(ctx context.Context) (queue.SweepReport, error) {
	rep, err := s.q.Sweep(ctx, queue.SweepOptions{
		Batch:        s.cfg.ExpireBatch,
		Margin:       time.Duration(s.cfg.ArtifactGrace) + time.Duration(s.cfg.ArtifactPutTTL),
		TombstoneTTL: time.Duration(s.cfg.ExpiredKept),
		BeforeDelete: s.deleteArtifacts,
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("expiry sweep", "err", err, "graphs", rep.Graphs, "tasks", rep.Tasks)
	}
	if rep.Graphs+rep.Tasks+rep.Tombstones > 0 {
		s.log.Info("expired", "graphs", rep.Graphs, "tasks", rep.Tasks, "batches", rep.Batches, "tombstones_dropped", rep.Tombstones)
	}
	return rep, err
}

// deleteArtifacts deletes every object under <prefix><taskId>/ of each
// task, in DeleteObjects calls of up to 1,000 keys. Task ids are
// [A-Za-z0-9_-] (taskdef.ValidID), so "<id>/" never reaches another
// task's objects.
func (s *Server) deleteArtifacts(ctx context.Context, taskIDs []string) error {
	if s.s3 == nil || s.cfg.S3.Bucket == "" {
		return nil
	}
	bucket := aws.String(s.cfg.S3.Bucket)
	var keys []s3types.ObjectIdentifier
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		out, err := s.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: bucket,
			Delete: &s3types.Delete{Objects: keys, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete %d expired artifacts: %w", len(keys), err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete expired artifacts: %d of %d refused, first %s: %s %s", len(out.Errors), len(keys), aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		keys = keys[:0]
		return nil
	}
	for _, id := range taskIDs {
		prefix := s.cfg.S3.Prefix + id + "/"
		pg := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String(prefix)})
		for pg.HasMorePages() {
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list the artifacts of expired task %s: %w", id, err)
			}
			for _, o := range page.Contents {
				if !strings.HasPrefix(aws.ToString(o.Key), prefix) {
					continue
				}
				keys = append(keys, s3types.ObjectIdentifier{Key: o.Key})
				if len(keys) == maxDeleteObjects {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	return flush()
}

// expiredErr turns the queue's "not found" for the route's graph or task
// into "expired" (410 Gone) when the id has a tombstone, so the CLI and the
// page can say so.
func (s *Server) expiredErr(r *http.Request, err error) error {
	id := r.PathValue("id")
	if id == "" {
		return err
	}
	kind := "task"
	if strings.Contains(r.Pattern, "/graphs/") {
		kind = "graph"
	}
	return s.q.ExpiredOr(r.Context(), err, kind, id)
}
