// Package records is the framed format in which the worker streams a mapper
// task's input records into the job container. The format, its encoder and
// its decoder live in sdk/records (module github.com/af-project/af/sdk),
// which job binaries and the SDK's test helper link without the rest of af;
// this package gives the worker the same names, so there is one
// implementation.
package records

import (
	"io"

	sdk "github.com/af-project/af/sdk/records"
)

// Marker is the first byte of a file marker line.
const Marker = sdk.Marker

// DefaultMaxLine is the longest input line the encoder passes through.
const DefaultMaxLine = sdk.DefaultMaxLine

// Bad line reasons reported to CopyLines's onBad callback.
const (
	ReasonNoTab   = sdk.ReasonNoTab
	ReasonMarker  = sdk.ReasonMarker
	ReasonTooLong = sdk.ReasonTooLong
)

// FileHeader is the JSON body of a file marker.
type FileHeader = sdk.FileHeader

// Writer encodes the framed stream.
type Writer = sdk.Writer

// Reader decodes the framed stream.
type Reader = sdk.Reader

// Record is one decoded element of the stream.
type Record = sdk.Record

// NewWriter returns a Writer with the default maximum line length.
func NewWriter(w io.Writer) *Writer { return sdk.NewWriter(w) }

// NewReader returns a Reader accepting lines up to DefaultMaxLine bytes.
func NewReader(r io.Reader) *Reader { return sdk.NewReader(r) }
