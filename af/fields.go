package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/af-project/af/internal/queueclient"
)

// fieldFlags maps the request fields af serve names in its 4xx answers
// to the flag of af that sets them. Longer names come first, so that
// payload.maxRunTime is found before a shorter field it contains.
var fieldFlags = []struct{ field, flag string }{
	{"payload.maxRunTime", "--max-run-time"},
	{"payload.image", "IMAGE (af submit's second argument)"},
	{"payload.env", "--env"},
	{"metadata.owner", "--owner"},
	{"metadata.name", "--name"},
	{"deadline", "--deadline"},
	{"priority", "--priority"},
	{"owner", "--owner"},
	{"email", "--email"},
	{"expires", "--expires"},
	{"role", "--role"},
}

// fieldWord matches a field name as a whole word of a message.
func fieldWord(field string) *regexp.Regexp {
	return regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(field) + `($|[^A-Za-z0-9_])`)
}

var fieldWords = func() []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(fieldFlags))
	for i, ff := range fieldFlags {
		out[i] = fieldWord(ff.field)
	}
	return out
}()

// flagForField returns the flag that sets the first field a 4xx message
// names, or "".
func flagForField(msg string) string {
	for i, re := range fieldWords {
		if re.MatchString(msg) {
			return fieldFlags[i].flag
		}
	}
	return ""
}

// explainFieldErr adds to a 4xx answer of af serve the flag of af that
// sets the field it names (when the message does not name the flag).
func explainFieldErr(err error) error {
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 {
		return err
	}
	flag := flagForField(ae.Message)
	if flag == "" || strings.Contains(ae.Message, flag) {
		return err
	}
	return fmt.Errorf("%w (set by %s)", err, flag)
}
