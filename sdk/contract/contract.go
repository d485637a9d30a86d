// Package contract holds the names of the container contract between the
// af worker and a job's helper (the Go SDK, the Python af_helper): the
// environment variables that say where the input and output are and which
// side of the job runs, and the paths inside the container. It has no
// dependencies, so the SDK a job binary links stays small: no YAML, no
// Docker, nothing of the worker's.
package contract

// The environment a job container starts with.
const (
	// EnvInput is the path the helper reads its input from, or StdinInput.
	EnvInput = "AF_INPUT"
	// EnvOutput is the path of the file the helper writes its output to.
	EnvOutput = "AF_OUTPUT"
	// EnvTaskKind is TaskMap or TaskReduce.
	EnvTaskKind = "AF_TASK_KIND"
)

// Values and paths inside the container.
const (
	// ScratchDir is where the task's scratch dir is mounted, read-write.
	ScratchDir = "/scratch"
	// InputFIFO is the usual EnvInput when records go through a FIFO.
	InputFIFO = ScratchDir + "/input"
	// OutputFile is the usual EnvOutput.
	OutputFile = ScratchDir + "/output"
	// StdinInput is the EnvInput value meaning "read stdin".
	StdinInput = "-"
	// TaskMap and TaskReduce are the values of EnvTaskKind and the
	// helpers' first argument.
	TaskMap    = "map"
	TaskReduce = "reduce"
)
