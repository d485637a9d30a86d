package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithy "github.com/aws/smithy-go"

	"github.com/af-project/af/internal/taskdef"
)

// getURLTTL is a presigned GET's life: the redirected client follows it at
// once. A PUT's life is the config's artifact_put_ttl.
const getURLTTL = 15 * time.Minute

// maxArtifactName bounds names so keys stay well within S3's 1,024 bytes.
const maxArtifactName = 512

// checkArtifactName refuses names that would escape the run's key prefix
// or make keys that tools mangle.
func checkArtifactName(name string) error {
	switch {
	case name == "":
		return badRequest("artifact name is empty (want e.g. public/result.txt)")
	case len(name) > maxArtifactName:
		return badRequest("artifact name is %d bytes, more than %d", len(name), maxArtifactName)
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return badRequest("artifact name %q must not start or end with '/'", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return badRequest("artifact name %q has an empty, '.' or '..' path segment", name)
		}
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '\\' || r == unicode.ReplacementChar {
			return badRequest("artifact name %q has a control character, a backslash or invalid UTF-8", name)
		}
	}
	return nil
}

// artifactKey is where an artifact lives in the bucket.
func (s *Server) artifactKey(taskID string, runID int, name string) string {
	return s.cfg.S3.Prefix + taskID + "/" + strconv.Itoa(runID) + "/" + name
}

func (s *Server) artifactsEnabled() error {
	if s.s3 == nil || s.cfg.S3.Bucket == "" {
		return &httpError{status: http.StatusServiceUnavailable, code: "ArtifactsDisabled",
			msg: "this server has no artifact bucket: set s3.bucket in its config and give `af serve` S3 credentials"}
	}
	return nil
}

// findRun returns the task's status and its run runID.
func (s *Server) findRun(ctx context.Context, taskID string, runID int) (taskdef.TaskStatus, taskdef.Run, error) {
	st, err := s.q.Task(ctx, taskID)
	if err != nil {
		return st, taskdef.Run{}, err
	}
	for _, r := range st.Runs {
		if r.RunID == runID {
			return st, r, nil
		}
	}
	return st, taskdef.Run{}, &httpError{status: http.StatusNotFound, code: "NotFound",
		msg: fmt.Sprintf("task %s has no run %d (it has %d runs)", taskID, runID, len(st.Runs))}
}

func (s *Server) createArtifact(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() { s.metrics.artifact("create", err) }()
	if err := s.artifactsEnabled(); err != nil {
		return err
	}
	id, runID, err := runParams(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkArtifactName(name); err != nil {
		return err
	}
	var req taskdef.ArtifactRequest
	if err := decode(w, r, maxSmallBody, &req); err != nil {
		return err
	}
	if req.ContentType == "" {
		req.ContentType = "application/octet-stream"
	}
	st, run, err := s.findRun(r.Context(), id, runID)
	if err != nil {
		return err
	}
	// Only the worker that claimed the run may write its artifacts: a
	// presigned PUT could otherwise replace another run's result.
	if err := s.q.AuthorizeRun(r.Context(), id, runID, runToken(r)); err != nil {
		return err
	}
	now := s.clock.Now()
	// An expired task's artifacts are being deleted (or will be): one
	// created now could outlive every record of it.
	if !st.Expires.IsZero() && !now.Before(st.Expires) {
		return &httpError{status: http.StatusGone, code: "Expired",
			msg: fmt.Sprintf("task %s expired at %s: its artifacts are deleted, and no new ones can be created", id, st.Expires.UTC().Format(time.RFC3339))}
	}
	// The run's worker may write while it runs, and for a short grace
	// after it resolved so its last log lines and an exception's log
	// survive; later writes would rewrite history under a reader.
	grace := time.Duration(s.cfg.ArtifactGrace)
	switch {
	case run.State == taskdef.StateRunning:
	case run.State.Resolved() && run.Resolved != nil && now.Sub(*run.Resolved) <= grace:
	default:
		when := ""
		if run.Resolved != nil {
			when = " at " + run.Resolved.UTC().Format(time.RFC3339)
		}
		return &httpError{status: http.StatusConflict, code: "RunNotCurrent",
			msg: fmt.Sprintf("run %d of task %s is %s%s: artifacts can be created while a run is running or within %s after it resolved", runID, id, run.State, when, grace)}
	}
	in := &s3.PutObjectInput{
		Bucket:      aws.String(s.cfg.S3.Bucket),
		Key:         aws.String(s.artifactKey(id, runID, name)),
		ContentType: aws.String(req.ContentType),
	}
	if !st.Expires.IsZero() {
		// Recorded on the object so whoever cleans the bucket can keep
		// every artifact at least as long as its task.
		in.Expires = aws.Time(st.Expires)
	}
	ttl := time.Duration(s.cfg.ArtifactPutTTL)
	p, err := s.presign.PresignPutObject(r.Context(), in, s3.WithPresignExpires(ttl))
	if err != nil {
		return fmt.Errorf("presign artifact upload: %w", err)
	}
	headers := map[string]string{}
	for k, v := range p.SignedHeader {
		if strings.EqualFold(k, "Host") || len(v) == 0 {
			continue
		}
		headers[http.CanonicalHeaderKey(k)] = v[0]
	}
	return writeJSON(w, http.StatusOK, taskdef.ArtifactResponse{
		PutURL: p.URL, Expires: now.Add(ttl), ContentType: req.ContentType, Headers: headers,
	})
}

func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request) error {
	id, runID, err := runParams(r)
	if err != nil {
		return err
	}
	if err := s.canReadTask(r, id); err != nil {
		return err
	}
	return s.redirectArtifact(w, r, id, runID, r.PathValue("name"))
}

func (s *Server) getLatestArtifact(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.canReadTask(r, id); err != nil {
		return err
	}
	st, err := s.q.Task(r.Context(), id)
	if err != nil {
		return err
	}
	if len(st.Runs) == 0 {
		return &httpError{status: http.StatusNotFound, code: "NotFound", msg: fmt.Sprintf("task %s has not run yet", id)}
	}
	return s.redirectArtifact(w, r, id, st.Runs[len(st.Runs)-1].RunID, r.PathValue("name"))
}

// redirectArtifact answers 303 to a presigned GET of an existing artifact.
func (s *Server) redirectArtifact(w http.ResponseWriter, r *http.Request, id string, runID int, name string) (err error) {
	defer func() { s.metrics.artifact("get", err) }()
	if err := s.artifactsEnabled(); err != nil {
		return err
	}
	if err := checkArtifactName(name); err != nil {
		return err
	}
	if _, _, err := s.findRun(r.Context(), id, runID); err != nil {
		return err
	}
	key := s.artifactKey(id, runID, name)
	// Checking first turns a missing artifact into a 404 from the queue
	// with a message, instead of an S3 XML error page after the redirect.
	if _, err := s.s3.HeadObject(r.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.cfg.S3.Bucket), Key: aws.String(key)}); err != nil {
		if isNotFound(err) {
			return &httpError{status: http.StatusNotFound, code: "NotFound",
				msg: fmt.Sprintf("task %s run %d has no artifact %s", id, runID, name)}
		}
		return fmt.Errorf("look up artifact %s: %w", name, err)
	}
	p, err := s.presign.PresignGetObject(r.Context(), &s3.GetObjectInput{Bucket: aws.String(s.cfg.S3.Bucket), Key: aws.String(key)},
		s3.WithPresignExpires(getURLTTL))
	if err != nil {
		return fmt.Errorf("presign artifact download: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.URL, http.StatusSeeOther)
	return nil
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() { s.metrics.artifact("list", err) }()
	id, runID, err := runParams(r)
	if err != nil {
		return err
	}
	if err := s.canReadTask(r, id); err != nil {
		return err
	}
	if err := s.artifactsEnabled(); err != nil {
		return err
	}
	if _, _, err := s.findRun(r.Context(), id, runID); err != nil {
		return err
	}
	prefix := s.artifactKey(id, runID, "")
	out := taskdef.ArtifactList{TaskID: id, RunID: runID, Artifacts: []taskdef.Artifact{}}
	pg := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.S3.Bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(r.Context())
		if err != nil {
			return fmt.Errorf("list artifacts of task %s run %d: %w", id, runID, err)
		}
		for _, o := range page.Contents {
			a := taskdef.Artifact{Name: strings.TrimPrefix(aws.ToString(o.Key), prefix), Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				a.LastModified = *o.LastModified
			}
			out.Artifacts = append(out.Artifacts, a)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

func isNotFound(err error) bool {
	var nf *s3types.NotFound
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nsk) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchKey")
}

// EnsureBucket creates the artifact bucket when it does not exist.
func EnsureBucket(ctx context.Context, client *s3.Client, bucket string) (created bool, err error) {
	_, err = client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return false, nil
	}
	var nb *s3types.NotFound
	var ae smithy.APIError
	if !errors.As(err, &nb) && !(errors.As(err, &ae) && (ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchBucket")) {
		return false, fmt.Errorf("check artifact bucket %s: %w", bucket, err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return false, nil
		}
		return false, fmt.Errorf("create artifact bucket %s: %w", bucket, err)
	}
	return true, nil
}
