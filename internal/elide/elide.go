// Package elide shortens text for people without losing its end: a
// traceback's last frames (the user's file and line) and its exception
// are at the bottom, so every cut keeps the tail, and says what it cut.
package elide

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Middle returns s when it is at most max bytes; otherwise its head and
// its tail (about a third and two thirds of max) around a line saying how
// many bytes were cut. Cuts fall on line boundaries when one is near and
// never inside a UTF-8 sequence. The result is at most max bytes plus the
// marker's.
func Middle(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	headN := max / 3
	tailN := max - headN
	head := s[:runeStart(s, headN)]
	if i := strings.LastIndexByte(head, '\n'); i >= len(head)/2 {
		head = head[:i+1]
	}
	tail := s[runeStart(s, len(s)-tailN):]
	if i := strings.IndexByte(tail, '\n'); i >= 0 && i < len(tail)/2 {
		tail = tail[i+1:]
	}
	cut := len(s) - len(head) - len(tail)
	sep := "\n"
	if strings.HasSuffix(head, "\n") {
		sep = ""
	}
	return head + sep + fmt.Sprintf("[… %d bytes cut …]", cut) + "\n" + tail
}

// Line is Middle for a one-line display: s's whitespace runs become one
// space, and when it is longer than max bytes its head and tail are kept
// around " … " (the tail a little longer, so an error's last words stay).
func Line(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if max <= 0 || len(s) <= max {
		return s
	}
	const mark = " … "
	room := max - len(mark)
	if room < 2 {
		return s[:runeStart(s, max)]
	}
	headN := room * 2 / 5
	return s[:runeStart(s, headN)] + mark + s[runeStart(s, len(s)-(room-headN)):]
}

// Tail returns s when it is at most max bytes; otherwise a line saying how
// many bytes were cut and then its last max bytes, from a line start when
// one is near.
func Tail(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	tail := s[runeStart(s, len(s)-max):]
	if i := strings.IndexByte(tail, '\n'); i >= 0 && i < len(tail)/2 {
		tail = tail[i+1:]
	}
	return fmt.Sprintf("[… %d bytes cut …]", len(s)-len(tail)) + "\n" + tail
}

// runeStart moves i back to the start of the UTF-8 sequence it falls in.
func runeStart(s string, i int) int {
	if i <= 0 {
		return 0
	}
	if i >= len(s) {
		return len(s)
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
