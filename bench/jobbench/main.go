// Command jobbench is issue 5's end-to-end benchmark (bench/50-job.sh): on
// one generated data set of telemetry-like gzip JSON lines in one MinIO, it
// times the os-count job through af (the Python helper image and the Go SDK
// image, on in-process workers over the real Docker engine), the same count
// by a single-process boto3 script and by Dask on a local cluster, and the
// ceiling of Go gunzip over the same objects; then the fixed cost of a task
// with no input. Every system's counts are checked against the counts the
// generator recorded. It prints one markdown section for BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/synth"
)

// config is the command line.
type config struct {
	rawBytes     int64
	files        int
	hist         int
	filesPerTask int
	workers      int
	capacity     int
	fixedTasks   int
	runs         int
	python       string
	scripts      string
	only         string
	command      string
	verbose      bool
	cpuProfile   string
}

func main() {
	var c config
	flag.Int64Var(&c.rawBytes, "raw-bytes", 1<<30, "uncompressed size of the data set")
	flag.IntVar(&c.files, "files", 128, "number of objects (a multiple of 16)")
	flag.IntVar(&c.hist, "hist", 16, "histograms per document (sets the document size)")
	flag.IntVar(&c.filesPerTask, "files-per-task", 64, "input files per mapper task")
	flag.IntVar(&c.workers, "workers", 1, "in-process af workers")
	flag.IntVar(&c.capacity, "capacity", 2, "tasks each worker runs at once")
	flag.IntVar(&c.fixedTasks, "fixed-tasks", 20, "mapper tasks with no input for the fixed cost")
	flag.IntVar(&c.runs, "runs", 1, "runs of each system; the fastest is reported (the machine is shared)")
	flag.StringVar(&c.python, "python", "/usr/bin/python3", "Python with boto3, dask and distributed (Debian's)")
	flag.StringVar(&c.scripts, "scripts", "", "directory of boto3_count.py and dask_count.py (default: next to this source)")
	flag.StringVar(&c.only, "only", "", "comma-separated systems to run (gunzip,loads,boto3,boto3-field,dask,af-python,af-python-loads,af-go,af-go-gogzip,fixed); default all")
	flag.StringVar(&c.command, "command", "", "the command line to print in the report")
	flag.BoolVar(&c.verbose, "v", false, "log af's components to stderr")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (queue server and workers) during the af jobs to this file")
	flag.Parse()
	if c.scripts == "" {
		c.scripts = "bench/jobbench"
	}
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "jobbench:", err)
		os.Exit(1)
	}
}

func (c config) want(system string) bool {
	if c.only == "" {
		return true
	}
	for _, s := range strings.Split(c.only, ",") {
		if strings.TrimSpace(s) == system {
			return true
		}
	}
	return false
}

// progress notes each step on stderr, so a slow run shows where it is.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "jobbench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// afSystems are the af jobs the benchmark runs, each with the worker's gzip
// decoder: auto (ISA-L, the worker's default where it is installed) and,
// for comparison, the Go job once more with the pure-Go decoder.
var afSystems = []struct {
	system, image string
	gzip          decompress.GzipDecoder
}{
	{"af-python", "af/os-count", decompress.GzipAuto},
	{"af-python-loads", "af/os-count-loads", decompress.GzipAuto},
	{"af-go", "af/os-count-go", decompress.GzipAuto},
	{"af-go-gogzip", "af/os-count-go", decompress.GzipGo},
}

// measure is one system's best run.
type measure struct {
	name    string
	seconds float64
	raw     int64
	note    string
	// cpu is the CPU time the system spent (0: not measured).
	cpu time.Duration
	ok  bool // ran and was checked
}

func (m measure) mbs() float64 {
	if m.seconds <= 0 {
		return 0
	}
	return float64(m.raw) / m.seconds / 1e6
}

// best keeps the faster of two runs of a system.
func best(a, b measure) measure {
	if !a.ok || (b.ok && b.seconds < a.seconds) {
		return b
	}
	return a
}

func run(c config, out io.Writer) error {
	ctx := context.Background()
	loadStart := loadAvg()
	var logOut io.Writer = io.Discard
	if c.verbose {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir, err := os.MkdirTemp("", "af-jobbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	e, err := startEnv(dir, log)
	if err != nil {
		return err
	}
	defer e.close()
	if c.want("af-python") || c.want("af-go") || c.want("af-go-gogzip") || c.want("fixed") {
		if err := e.requireImages("af/os-count", "af/os-count-go"); err != nil {
			return err
		}
	}
	if c.want("af-python-loads") {
		if err := e.requireImages("af/os-count-loads"); err != nil {
			return err
		}
	}
	anyJob := false
	for _, j := range afSystems {
		anyJob = anyJob || c.want(j.system)
	}
	if c.want("gunzip") || anyJob {
		if ok, why := decompress.ISAL(); !ok {
			return fmt.Errorf("ISA-L is not available (%s): build jobbench with CGO_ENABLED=1 -tags isal, as bench/50-job.sh does, or pass -only without gunzip and af systems", why)
		}
	}

	progress("generating %.2f GiB in %d files", float64(c.rawBytes)/(1<<30), c.files)
	t0 := time.Now()
	set, docSize, err := generate(dataSpec{RawBytes: c.rawBytes, Files: c.files, HistogramSize: c.hist, Seed: 5})
	if err != nil {
		return err
	}
	genTime := time.Since(t0)
	if err := upload(ctx, e, set); err != nil {
		return err
	}
	docs, compressed, raw := set.Totals()
	want := set.CountByOS(nil)
	wantText := synth.FormatOSCounts(want)
	progress("data: %d docs of %.0f bytes, %d raw bytes, %d gzip bytes (made in %s)", docs, docSize, raw, compressed, genTime.Round(time.Millisecond))

	ms := map[string]measure{}
	record := func(m measure) { ms[m.name] = best(ms[m.name], m) }
	check := func(system string, got map[string]int) error {
		if g := synth.FormatOSCounts(got); g != wantText {
			return fmt.Errorf("%s counted\n%swant\n%s", system, g, wantText)
		}
		return nil
	}

	jobs := map[string]jobRun{}
	var loadsRate float64 // json.loads alone, MB per CPU second
	cc := startContainerCPU(e.docker, "bench-")
	defer cc.close()
	for r := 0; r < c.runs; r++ {
		if c.want("gunzip") {
			for _, kind := range []readerKind{readOnly, gunzipStdlib, gunzipKlauspt, gunzipISAL} {
				progress("run %d: %s, 2 goroutines", r+1, kind)
				cpu0 := selfCPU()
				n, d, err := ceiling(ctx, e.minio.S3, set, kind, 2)
				cpu := selfCPU() - cpu0
				if err != nil {
					return err
				}
				want := raw
				if kind == readOnly {
					want = compressed
				}
				if n != want {
					return fmt.Errorf("%s read %d bytes, want %d", kind, n, want)
				}
				record(measure{name: string(kind), seconds: d.Seconds(), raw: raw, cpu: cpu, ok: true})
			}
		}
		if c.want("loads") && r == 0 {
			progress("json.loads floor")
			res, err := e.runPython(ctx, c.python, c.scripts, "loads_floor.py", "8")
			if err != nil {
				return err
			}
			if res.CPUSeconds <= 0 || res.RawBytes <= 0 {
				return fmt.Errorf("loads_floor.py measured nothing: %+v", res)
			}
			loadsRate = float64(res.RawBytes) / res.CPUSeconds / 1e6
		}
		if c.want("boto3") {
			progress("run %d: boto3 script", r+1)
			res, err := e.runPython(ctx, c.python, c.scripts, "boto3_count.py")
			if err != nil {
				return err
			}
			if err := check("the boto3 script", res.Counts); err != nil {
				return err
			}
			record(measure{name: "boto3", seconds: res.Seconds, raw: res.RawBytes, cpu: seconds(res.CPUSeconds), ok: true})
		}
		if c.want("boto3-field") {
			progress("run %d: boto3 script with af_helper.field", r+1)
			res, err := e.runPython(ctx, c.python, c.scripts, "boto3_count.py", "field")
			if err != nil {
				return err
			}
			if err := check("the boto3 script with af_helper.field", res.Counts); err != nil {
				return err
			}
			record(measure{name: "boto3-field", seconds: res.Seconds, raw: res.RawBytes, cpu: seconds(res.CPUSeconds), ok: true})
		}
		if c.want("dask") {
			progress("run %d: dask", r+1)
			res, err := e.runPython(ctx, c.python, c.scripts, "dask_count.py", "2")
			if err != nil {
				return err
			}
			if err := check("dask", res.Counts); err != nil {
				return err
			}
			record(measure{name: "dask", seconds: res.Seconds, raw: res.RawBytes, cpu: seconds(res.CPUSeconds), ok: true,
				note: fmt.Sprintf("cluster start-up %.1f s, not counted", res.StartupSeconds)})
		}
		for _, j := range afSystems {
			if !c.want(j.system) {
				continue
			}
			if err := e.startWorkers(c.workers, c.capacity, j.gzip); err != nil {
				return err
			}
			progress("run %d: af job %s", r+1, j.image)
			cpu0, ccpu0 := selfCPU(), cc.total()
			stopProfile, err := startProfile(c.cpuProfile, j.system, r)
			if err != nil {
				return err
			}
			jr, err := e.runJob(ctx, set, j.image, c.filesPerTask)
			jr.gzip = e.pool.opener.Gzip()
			stopProfile()
			if err != nil {
				return err
			}
			jr.workerCPU, jr.containerCPU = selfCPU()-cpu0, cc.total()-ccpu0
			if jr.result != wantText {
				return fmt.Errorf("af job %s result\n%swant\n%s", j.image, jr.result, wantText)
			}
			if jr.raw != raw {
				return fmt.Errorf("af job %s mappers read %d raw bytes, want %d", j.image, jr.raw, raw)
			}
			m := measure{name: j.system, seconds: jr.elapsed.Seconds(), raw: jr.raw, cpu: jr.workerCPU + jr.containerCPU, ok: true}
			if prev, ok := ms[j.system]; !ok || m.seconds < prev.seconds {
				jobs[j.system] = jr
			}
			record(m)
		}
	}

	var fixedPy, fixedGo []time.Duration
	var redPy, redGo time.Duration
	if c.want("fixed") {
		if err := e.startWorkers(c.workers, c.capacity, decompress.GzipAuto); err != nil {
			return err
		}
		progress("fixed cost: %d empty mappers of af/os-count", c.fixedTasks)
		if fixedPy, redPy, err = e.fixedCost(ctx, "af/os-count", c.fixedTasks); err != nil {
			return err
		}
		progress("fixed cost: %d empty mappers of af/os-count-go", c.fixedTasks)
		if fixedGo, redGo, err = e.fixedCost(ctx, "af/os-count-go", c.fixedTasks); err != nil {
			return err
		}
	}

	report(out, c, reportData{
		loadStart: loadStart, loadEnd: loadAvg(), loadsRate: loadsRate,
		ms: ms, jobs: jobs, docs: docs, docSize: docSize, raw: raw, compressed: compressed, files: len(set.Files),
		fixedPy: fixedPy, fixedGo: fixedGo, redPy: redPy, redGo: redGo,
	})
	return nil
}

// startProfile starts a CPU profile named after base, the system and the
// run, when base is set.
func startProfile(base, system string, run int) (func(), error) {
	if base == "" {
		return func() {}, nil
	}
	f, err := os.Create(fmt.Sprintf("%s.%s.%d", base, system, run+1))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

type reportData struct {
	ms                 map[string]measure
	jobs               map[string]jobRun
	docs               int
	docSize            float64
	raw, compressed    int64
	files              int
	fixedPy, fixedGo   []time.Duration
	redPy, redGo       time.Duration
	loadStart, loadEnd string
	loadsRate          float64
}

func report(w io.Writer, c config, d reportData) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	ms := d.ms
	rate := func(name string) float64 { return ms[name].mbs() }
	afPy, afGo := rate("af-python"), rate("af-go")
	dask, boto := rate("dask"), rate("boto3")
	// The ceiling is Go gunzip (the faster of the two Go decoders);
	// ISA-L's own gunzip is reported beside it.
	gzCeil := max(rate(string(gunzipStdlib)), rate(string(gunzipKlauspt)))
	isalCeil, afGoGo := rate(string(gunzipISAL)), rate("af-go-gogzip")
	ratio := func(a, b float64) string {
		if a <= 0 || b <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	both := func(a, b bool, parts ...string) string {
		return fmt.Sprintf("%s (%s), %s (%s)", yes(a), parts[0], yes(b), parts[1])
	}

	p("## The job end to end: af vs boto3 vs Dask, and the gunzip ceiling (issue 5)")
	p("")
	p("One run, one data set in one MinIO on loopback: %d gzip objects of telemetry-like `<id>\\t<json>` lines, %d documents of about %.1f KB, %.2f GiB uncompressed (%.0f MB gzip, %.1fx). "+
		"Every system counts documents by `info.OS` and its counts are checked against the generator's. MB/s are of uncompressed bytes; %d cores (GOMAXPROCS %d), shared with other work%s.",
		d.files, d.docs, d.docSize/1000, float64(d.raw)/(1<<30), float64(d.compressed)/1e6, float64(d.raw)/float64(d.compressed),
		runtime.NumCPU(), runtime.GOMAXPROCS(0), bestOf(c.runs))
	p("")
	p("- **af**: `submit.BuildGraph` graph (%d mappers of %d files, one reducer) posted to an in-process `af serve` queue; %d in-process worker(s) × capacity %d on the Docker engine (FIFO input, 1 CPU per container), worker defaults otherwise (one mapper per slot, bounded by files per task only: `af submit`'s default of 64 MiB of compressed input per mapper would cut this data set into 4 mappers, two rounds on 2 slots, each paying a container start); time from graph creation to the graph's resolution (reducer result uploaded), as the queue records them. The workers decode gzip with ISA-L (`--gzip auto`, the default, on a host with Debian's libisal2); **af-go with Go gzip** is the Go job again on workers started with `--gzip go` (klauspost/compress), which shows what the decoder contributes. Images `af/os-count` (the example Python job: `af_helper.field(value, \"info\", \"OS\")`, which decodes `info` and nothing after it), `af/os-count-loads` (the same job with `json.loads` per document, as the baselines parse) and `af/os-count-go` (Go SDK, `afjob.Field`).",
		(d.files+c.filesPerTask-1)/c.filesPerTask, c.filesPerTask, c.workers, c.capacity)
	p("- **boto3**: `bench/jobbench/boto3_count.py`, one process (Debian's python3-boto3): list, get, `zlib` gunzip, `json.loads` per line; **boto3 + field** is the same script reading `info.OS` with `af_helper.field`, af's parser, so the table separates what the parser gains from what af's system does.")
	p("- **Dask**: `bench/jobbench/dask_count.py`, Debian's python3-dask/python3-distributed, `LocalCluster(n_workers=2, threads_per_worker=1)`, a `dask.bag` of object keys, each task reading with boto3 as above; timed from the key listing to the folded counts (%s).", orDash(ms["dask"].note))
	p("- **gunzip ceiling**: Go, 2 goroutines reading the same objects from MinIO and gunzipping into `io.Discard`; the issue's ceiling is the faster of the standard library and klauspost/compress. The same with af's ISA-L reader (`decompress.GzipISAL`) is reported beside it.")
	p("- **CPU s** is the CPU time of the timed span: the scripts' processes (every Dask worker included) or this process (queue server, workers, gunzip goroutines) plus the job containers' cgroups; MinIO's own CPU is not counted for anyone. Unlike MB/s it does not depend on what else the machine runs.")
	p("")
	p("Load average (1 min) at the start %s, at the end %s.%s", d.loadStart, d.loadEnd, dockerShareNote(d.loadStart))
	p("")
	p("```")
	cmd := c.command
	if cmd == "" {
		cmd = "go run ./bench/jobbench " + strings.Join(os.Args[1:], " ")
	}
	p("%s", cmd)
	p("```")
	p("")
	p("| system | MB/s | seconds | ratio to af-python | ratio to af-go | CPU s | MB per CPU s | target | meets |")
	p("|---|---|---|---|---|---|---|---|---|")
	row := func(label, name, target, meets string) {
		m, ok := ms[name]
		if !ok {
			p("| %s | not run | — | — | — | — | — | %s | — |", label, target)
			return
		}
		cpu, eff := "—", "—"
		if m.cpu > 0 {
			cpu = fmt.Sprintf("%.1f", m.cpu.Seconds())
			eff = fmt.Sprintf("%.0f", float64(m.raw)/m.cpu.Seconds()/1e6)
		}
		p("| %s | %.1f | %.2f | %s | %s | %s | %s | %s | %s |", label, m.mbs(), m.seconds, ratio(m.mbs(), afPy), ratio(m.mbs(), afGo), cpu, eff, target, meets)
	}
	row("af job, Python helper (af/os-count, `af_helper.field`)", "af-python", "≥ 1.3x Dask; ≥ 2x boto3",
		both(afPy >= 1.3*dask && dask > 0, afPy >= 2*boto && boto > 0, ratio(afPy, dask)+"x Dask", ratio(afPy, boto)+"x boto3"))
	afPyLoads, botoField := rate("af-python-loads"), rate("boto3-field")
	row("af job, Python helper, `json.loads` per document (af/os-count-loads)", "af-python-loads", "— (the baselines' parser)",
		fmt.Sprintf("%sx Dask, %sx boto3", ratio(afPyLoads, dask), ratio(afPyLoads, boto)))
	row("af job, Go SDK (af/os-count-go)", "af-go", "≥ 5x Dask; ≥ 80% of the gunzip ceiling",
		both(afGo >= 5*dask && dask > 0, afGo >= 0.8*gzCeil && gzCeil > 0, ratio(afGo, dask)+"x Dask", pct(afGo, gzCeil)+" of the Go ceiling; "+pct(afGo, isalCeil)+" of ISA-L gunzip"))
	row("af job, Go SDK, workers with Go gzip (`--gzip go`)", "af-go-gogzip", "— (the decoder's share)",
		fmt.Sprintf("%sx Dask, %s of the Go ceiling", ratio(afGoGo, dask), pct(afGoGo, gzCeil)))
	row("boto3 script, one process", "boto3", "— (reference here: about 44 MB/s)", "—")
	row("boto3 script + `af_helper.field`, one process", "boto3-field", "— (af's parser)",
		fmt.Sprintf("af-python is %sx this", ratio(afPy, botoField)))
	row("Dask LocalCluster, 2 workers × 1 thread", "dask", "— (reference here: about 64 MB/s)", "—")
	row("gunzip ceiling, compress/gzip, 2 goroutines", string(gunzipStdlib), "— (reference: 220-260 MB/s a core)", "—")
	row("gunzip ceiling, klauspost/compress/gzip, 2 goroutines", string(gunzipKlauspt), "— (reference: 220-260 MB/s a core)", "—")
	row("gunzip, ISA-L (af's reader), 2 goroutines", string(gunzipISAL), "— (not Go; the worker's decoder)", "—")
	if m, ok := ms[string(readOnly)]; ok {
		p("| S3 GET only (no gunzip), 2 goroutines | %.1f (%.1f MB/s gzip) | %.2f | — | — | %.1f | — | — | — |", m.mbs(), float64(d.compressed)/m.seconds/1e6, m.seconds, m.cpu.Seconds())
	}
	p("")
	if eff := func(n string) float64 { m := ms[n]; return float64(m.raw) / m.cpu.Seconds() / 1e6 }; ms["af-go"].cpu > 0 && ms[string(gunzipKlauspt)].cpu > 0 {
		for _, pair := range [][2]string{{"af-go", string(gunzipISAL)}, {"af-go-gogzip", string(gunzipKlauspt)}} {
			if ms[pair[0]].cpu > 0 && ms[pair[1]].cpu > 0 {
				p("CPU bound: %s spends %.2fx the CPU per byte that %s gunzip alone does (%.0f vs %.0f MB per CPU s), so where both are CPU-bound on the same cores it reaches at most %.0f%% of that gunzip before any fixed cost.",
					pair[0], eff(pair[1])/eff(pair[0]), pair[1], eff(pair[0]), eff(pair[1]), 100*eff(pair[0])/eff(pair[1]))
			}
		}
		for _, pair := range [][2]string{{"af-python-loads", "boto3"}, {"af-python", "boto3-field"}} {
			if ms[pair[0]].cpu > 0 && ms[pair[1]].cpu > 0 {
				p("With the same parser, %s spends %.2fx the CPU per byte of the one-process %s (%.0f vs %.0f MB per CPU s): on %d cores it can be at most %.2fx that script where both are CPU-bound.",
					pair[0], eff(pair[1])/eff(pair[0]), pair[1], eff(pair[0]), eff(pair[1]), c.workers*c.capacity, float64(c.workers*c.capacity)*eff(pair[0])/eff(pair[1]))
			}
		}
		p("")
	}
	// The floor takes the cheapest gunzip measured (ISA-L's when it ran):
	// it bounds any system, af's workers included.
	gz, gzName := ms[string(gunzipKlauspt)], "klauspost"
	if is := ms[string(gunzipISAL)]; is.cpu > 0 && (gz.cpu <= 0 || float64(is.raw)/is.cpu.Seconds() > float64(gz.raw)/gz.cpu.Seconds()) {
		gz, gzName = is, "ISA-L"
	}
	if d.loadsRate > 0 && gz.cpu > 0 {
		gzRate := float64(gz.raw) / gz.cpu.Seconds() / 1e6
		cores := float64(runtime.NumCPU())
		bound := cores / (1/d.loadsRate + 1/gzRate)
		p("Floor of every Python system here: `json.loads` alone decodes these documents at %.0f MB per CPU s (`bench/jobbench/loads_floor.py`, 8 objects, best of 3) and gunzip costs at least 1/%.0f CPU s per MB (%s), so no system that runs `json.loads` on every document can count faster than %.0f MB/s on %.0f cores, with nothing else running and no fixed cost.",
			d.loadsRate, gzRate, gzName, bound, cores)
		if dask > 0 && boto > 0 {
			p("The Python targets against this run's baselines need %.0f MB/s (1.3x Dask) and %.0f MB/s (2x boto3): %.0f%% and %.0f%% of that bound; af with `json.loads` (af/os-count-loads) reached %.0f MB/s (%.0f%%). af's example job (af/os-count) skips most of that decoding: `af_helper.field` decodes only `info`.",
				1.3*dask, 2*boto, 100*1.3*dask/bound, 100*2*boto/bound, afPyLoads, 100*afPyLoads/bound)
		}
		p("")
	}
	if len(d.fixedPy) > 0 {
		p("Fixed cost of a task with no input (claimed → resolved, from the queue's run times; %d empty mappers and their reducer per image, %d worker(s) × capacity %d): "+
			"**Python helper p50 %s, p90 %s** (reducer %s); **Go SDK p50 %s, p90 %s** (reducer %s). Target: p50 under 1 s — %s (Python), %s (Go).",
			len(d.fixedPy), c.workers, c.capacity, ms3(quantile(d.fixedPy, .5)), ms3(quantile(d.fixedPy, .9)), ms3(d.redPy),
			ms3(quantile(d.fixedGo, .5)), ms3(quantile(d.fixedGo, .9)), ms3(d.redGo),
			yes(quantile(d.fixedPy, .5) < time.Second), yes(quantile(d.fixedGo, .5) < time.Second))
		p("")
	}
	for _, sys := range afSystems {
		name := sys.system
		j, ok := d.jobs[name]
		if !ok {
			continue
		}
		p("Where %s's %.2f s went (gzip: %s): first mapper claimed %s after the graph was created; mappers took p50 %s, max %s each (claimed → resolved, %d of them on %d slots); the last mapper resolved at %s; the reducer took %s. CPU: %.1f s in the worker process (queue server, S3 reads, gunzip, framing, sort, uploads), %.1f s in the job containers.",
			j.image, j.elapsed.Seconds(), j.gzip, ms3(j.firstClaim), ms3(quantile(j.mapperTimes, .5)), ms3(quantile(j.mapperTimes, 1)),
			j.mappers, c.workers*c.capacity, ms3(j.lastMapper), ms3(j.reducer), j.workerCPU.Seconds(), j.containerCPU.Seconds())
		p("")
	}
}

// loadAvg is the 1-minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// dockerShareNote explains, when other work was running as the benchmark
// started and Docker uses cgroup v1 with its default parent, why the af
// jobs' containers got less CPU than the host processes they are compared
// with.
func dockerShareNote(loadStart string) string {
	var v float64
	if _, err := fmt.Sscan(loadStart, &v); err != nil || v < float64(runtime.NumCPU())/2 {
		return ""
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cpu/docker/cpu.shares")
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" Other work was running (the load at the start is before this benchmark's own). Docker's containers share one cgroup v1 parent here (/docker, cpu.shares %s): under contention all job containers together get the CPU weight of one host process, while the baselines and the af worker run as host processes, so the af jobs' wall-clock figures suffer most from other work. The CPU columns are not affected.",
		strings.TrimSpace(string(b)))
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func bestOf(runs int) string {
	if runs <= 1 {
		return ""
	}
	return fmt.Sprintf("; each system ran %d times, the fastest is shown", runs)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func pct(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}

func ms3(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
