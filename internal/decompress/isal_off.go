//go:build !(cgo && isal)

package decompress

import (
	"errors"
	"io"
)

// BuiltWithISAL reports whether this binary can use ISA-L (built with cgo
// and -tags isal). Tests use it to build the commands they start the same
// way.
const BuiltWithISAL = false

func loadISAL() (bool, string) {
	return false, "this binary was built without ISA-L (build with CGO_ENABLED=1 -tags isal; needs Debian's libisal-dev)"
}

type isalReader struct{ io.Reader }

func newISALReader(io.Reader) (*isalReader, error) {
	return nil, errors.New("isa-l: not built in")
}

func (*isalReader) Close() error { return nil }
