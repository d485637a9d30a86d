package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
)

// A filter template is a filter whose strings may hold placeholders for
// the run's target, written as telemetry-server's run.sh scripts wrote
// theirs:
//
//	__TARGET_DATE__       the target's date, 20131011 (telemetry's submission_date)
//	__TARGET_ISODATE__    the same date as 2013-10-11 (Hive-style dt= partitions)
//	__TARGET_HOUR__       the target's hour, 00 to 23 (hourly schedules)
//	__TARGET_DATEHOUR__   date and hour, 2013101116
//
// Each may carry an offset, in days for the dates and in hours for the
// hours: __TARGET_DATE-6__ is six days before the target. A range is the
// filter's own {"min", "max"}, so the last 7 days up to the target are
//
//	{"min": "__TARGET_DATE-6__", "max": "__TARGET_DATE__"}
//
// Everything is computed in the schedule's time zone.
var placeholder = regexp.MustCompile(`__TARGET_([A-Z]*)([+-][0-9]+)?__`)

// ErrTemplate is wrapped by every error Render returns for the template.
var ErrTemplate = errors.New("bad filter template")

// maxOffset bounds an offset so that a typo cannot reach a date no index
// holds (about 27 years of days or hours).
const maxOffset = 10000

// Render puts target (in loc) into the template's placeholders.
func Render(template []byte, target time.Time, loc *time.Location) ([]byte, error) {
	target = target.In(loc)
	var errs []error
	out := placeholder.ReplaceAllFunc(template, func(m []byte) []byte {
		sub := placeholder.FindSubmatch(m)
		kind, off := string(sub[1]), 0
		if len(sub[2]) > 0 {
			n, err := strconv.Atoi(string(sub[2]))
			if err != nil || n > maxOffset || n < -maxOffset {
				errs = append(errs, fmt.Errorf("%w: %s: the offset must be between -%d and +%d", ErrTemplate, m, maxOffset, maxOffset))
				return m
			}
			off = n
		}
		switch kind {
		case "DATE":
			return []byte(target.AddDate(0, 0, off).Format("20060102"))
		case "ISODATE":
			return []byte(target.AddDate(0, 0, off).Format("2006-01-02"))
		case "HOUR":
			return []byte(target.Add(time.Duration(off) * time.Hour).Format("15"))
		case "DATEHOUR":
			return []byte(target.Add(time.Duration(off) * time.Hour).Format("2006010215"))
		}
		errs = append(errs, fmt.Errorf("%w: unknown placeholder %s; use __TARGET_DATE__, __TARGET_ISODATE__, __TARGET_HOUR__ or __TARGET_DATEHOUR__, with an optional offset such as __TARGET_DATE-6__", ErrTemplate, m))
		return m
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if i := bytes.Index(out, []byte("__TARGET")); i >= 0 {
		end := min(len(out), i+40)
		return nil, fmt.Errorf("%w: %q is not a placeholder; placeholders are __TARGET_DATE__ and the like, with two underscores at each end", ErrTemplate, out[i:end])
	}
	return out, nil
}

// RenderFilter renders the template for target and parses the result as a
// filter over schema. name names the template in errors; a rendered
// filter that does not parse is refused with the rendered text, since
// that is what the filter parser's message is about.
func RenderFilter(name string, template []byte, target time.Time, loc *time.Location, schema layout.Schema) (*filter.Filter, []byte, error) {
	out, err := Render(template, target, loc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	f, err := filter.Parse(name, out, schema)
	if err != nil {
		return nil, out, fmt.Errorf("%s rendered for the target %s is not a valid filter: %w\nrendered filter:\n%s", name, target.In(loc).Format("2006-01-02 15:04 MST"), err, out)
	}
	return f, out, nil
}
