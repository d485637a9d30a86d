package queue

import (
	"context"
	"errors"
	"fmt"
)

// BySystem is who the audit trail names for the changes af serve makes
// on its own (lease expiry, deadlines, dependencies resolving). Identity
// names have no spaces, so it cannot be one.
const BySystem = "af serve"

// ErrForbidden: the caller may not change this graph, or may not ask for
// this (priority high kept for other owners by the config) (HTTP 403).
// The wrapping message says who owns the graph or which rule refused.
// Nothing was changed.
var ErrForbidden = errors.New("forbidden")

// Actor is who asks for a change: its name goes on every record the
// change touches (the audit trail), and MayChange, when set, is asked in
// the change's own transaction whether the actor may change a graph of
// that owner (so the answer holds for the state the change acts on).
type Actor struct {
	// Name is the identity's name.
	Name string
	// MayChange returns nil when the actor may change a graph owned by
	// owner, or an error saying why not (it is wrapped as ErrForbidden).
	MayChange func(graphID, owner string) error
}

type actorKey struct{}

// WithActor returns ctx carrying the actor of the changes made with it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// actorFrom is ctx's actor; without one, changes are af serve's own.
func actorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	if a.Name == "" {
		a.Name = BySystem
	}
	return a
}

// forbiddenError is an ErrForbidden with the policy's reason.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string        { return e.msg }
func (e *forbiddenError) Is(target error) bool { return target == ErrForbidden }

// mayChange asks the actor's policy about graph graphID owned by owner.
func (w *wtx) mayChange(graphID, owner string) error {
	if w.actor.MayChange == nil {
		return nil
	}
	if err := w.actor.MayChange(graphID, owner); err != nil {
		if errors.Is(err, ErrForbidden) {
			return err
		}
		return &forbiddenError{msg: err.Error()}
	}
	return nil
}

// Forbidden returns an ErrForbidden with a message, for policies.
func Forbidden(format string, args ...any) error {
	return &forbiddenError{msg: fmt.Sprintf(format, args...)}
}

// mayDependOn checks a dependency on an existing task of another graph:
// the dependent's worker reads that task's result, so the actor must be
// allowed that graph too (else any submitter could read another owner's
// output by depending on it).
func (w *wtx) mayDependOn(taskID, dep string) error {
	if w.actor.MayChange == nil {
		return nil
	}
	var dt taskRec
	ok, err := getTask(w.tasks, dep, &dt)
	if err != nil || !ok {
		return err
	}
	g, err := w.graph(dt.GraphID)
	if err != nil || g == nil {
		return err
	}
	if err := w.mayChange(dt.GraphID, g.Owner); err != nil {
		return Forbidden("task %s: dependency %s is in graph %s, which is not yours: %v", taskID, dep, dt.GraphID, err)
	}
	return nil
}
