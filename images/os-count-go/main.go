// Command os-count is the os-count example job in Go: it counts documents
// by info.OS, combining inside each mapper, and writes "OS<TAB>count" lines.
// images/build.sh compiles it statically into the af/os-count-go image.
package main

import (
	"bytes"

	"github.com/af-project/af/sdk/afjob"
)

var one = []byte("1")

func main() {
	afjob.Main(afjob.Job{
		Map: func(_ string, _ []string, doc []byte, ctx *afjob.Context) error {
			os, ok := afjob.Field(doc, "info", "OS")
			if !ok || len(os) < 2 || os[0] != '"' {
				return ctx.WriteRaw([]byte(`"UNKNOWN"`), one)
			}
			if bytes.IndexByte(os, '\\') >= 0 {
				// Re-encode escaped strings so equal names group together.
				return ctx.Write(afjob.String(os), 1)
			}
			return ctx.WriteRaw(os, one)
		},
		Combine: sum,
		Reduce:  sum,
	})
}

// sum writes the key with the sum of its values: as a pair when combining,
// as a result line when reducing.
func sum(key []byte, values [][]byte, ctx *afjob.Context) error {
	var n int64
	for _, v := range values {
		i, err := afjob.Int(v)
		if err != nil {
			return err
		}
		n += i
	}
	return ctx.Write(afjob.String(key), n)
}
