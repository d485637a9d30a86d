// Command faultjob-go is the worker's fault-test job in Go: os-count whose
// map panics on the document named by AF_TEST_RAISE_ON, as a buggy job
// would. internal/worker/fault_test.go builds it into af-test/faultjob-go.
package main

import (
	"os"

	"github.com/af-project/af/sdk/afjob"
)

func main() {
	raiseOn := os.Getenv("AF_TEST_RAISE_ON")
	afjob.Main(afjob.Job{
		Map: func(id string, _ []string, doc []byte, ctx *afjob.Context) error {
			if raiseOn != "" && id == raiseOn {
				panic("poisoned document " + id)
			}
			name, ok := afjob.Field(doc, "info", "OS")
			if !ok {
				return ctx.Write("UNKNOWN", 1)
			}
			return ctx.Write(afjob.String(name), 1)
		},
		Combine: sum,
		Reduce:  sum,
	})
}

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
