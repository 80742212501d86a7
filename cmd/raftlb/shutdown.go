package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// stacksFile is the name, in the data dir, of the goroutine dump written
// when a graceful shutdown does not finish in time (the last one is kept).
const stacksFile = "shutdown-goroutines.txt"

// gracefulShare is the part of -shutdown-timeout given to the graceful
// steps as their context's deadline: what honours it (the raft shutdown,
// the API) gives up and reports which step it was in, and the director
// still closes the rest before the hard bound.
func gracefulShare(bound time.Duration) time.Duration {
	return bound - min(bound/10, time.Second)
}

// awaitShutdown runs shutdown with a context that ends after graceful
// (gracefulShare of the bound) and returns the agent's exit status: 0 when
// it finished, 1 when it failed, when a second signal came, or when it had
// not finished after bound. Whatever is stuck then stays stuck: the caller
// exits the process. When the graceful steps ran out of time, it logs
// where the shutdown was stuck and writes every goroutine's stack to
// dumpDir (or the temp dir).
func awaitShutdown(shutdown func(context.Context) error, sigs <-chan os.Signal, graceful, bound time.Duration, log *slog.Logger, dumpDir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), graceful)
	defer cancel()
	done := make(chan error, 1)
	gid := make(chan string, 1)
	go func() {
		gid <- goroutineID()
		done <- shutdown(ctx)
	}()
	hard := time.NewTimer(bound)
	defer hard.Stop()
	select {
	case err := <-done:
		if err == nil {
			return 0
		}
		if errors.Is(err, context.DeadlineExceeded) {
			_, file := dumpStacks(dumpDir, "", log)
			log.Error("shutdown did not finish within -shutdown-timeout", "timeout", bound, "err", err, "goroutines", file)
			return 1
		}
		log.Error("shutdown", "err", err)
		return 1
	case sig := <-sigs:
		log.Warn("second signal: exiting without finishing the graceful shutdown", "signal", sig.String())
		return 1
	case <-hard.C:
		select {
		case err := <-done: // it ended just as the bound came: report that
			if err == nil {
				return 0
			}
			log.Error("shutdown", "err", err)
			return 1
		default:
		}
		stuck, file := dumpStacks(dumpDir, <-gid, log)
		log.Error("shutdown did not finish within -shutdown-timeout; exiting with it unfinished", "timeout", bound,
			"stuck_in", stuck, "goroutines", file)
		return 1
	}
}

// goroutineID returns the id of the calling goroutine, as stack dumps
// name it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// dumpStacks writes every goroutine's stack to a file and returns its path
// and, if gid names one, where that goroutine is: its calls, innermost
// first, and its state. If no file can be written the dump goes to log at
// debug level.
func dumpStacks(dir, gid string, log *slog.Logger) (stuck, path string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	if gid != "" {
		stuck = callChain(buf.String(), gid)
	}
	path, err := writeStacks(dir, buf.Bytes())
	if err != nil {
		log.Warn("cannot write the goroutine dump; it is logged at debug level", "err", err)
		log.Debug("goroutines", "dump", buf.String())
		return stuck, ""
	}
	return stuck, path
}

func writeStacks(dir string, b []byte) (string, error) {
	if dir != "" {
		path := filepath.Join(dir, stacksFile)
		if err := os.WriteFile(path, b, 0o600); err == nil {
			return path, nil
		}
	}
	f, err := os.CreateTemp("", "raftlb-"+stacksFile+"-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// callChain finds goroutine gid in a dump (runtime/pprof debug=2, the
// panic format) and names its calls outside the runtime, innermost first,
// up to the goroutine that awaitShutdown started, then its state:
// "sync.(*WaitGroup).Wait < agent.(*Agent).Shutdown [semacquire, 1 minutes]".
func callChain(dump, gid string) string {
	for _, g := range strings.Split(dump, "\n\n") {
		header, frames, _ := strings.Cut(g, "\n")
		rest, ok := strings.CutPrefix(header, "goroutine "+gid+" [")
		if !ok {
			continue
		}
		state := strings.TrimSuffix(rest, "]:")
		var calls []string
		for _, line := range strings.Split(frames, "\n") {
			if line == "" || line[0] == '\t' || strings.HasPrefix(line, "created by ") {
				continue
			}
			fn := funcName(line)
			if strings.Contains(fn, "awaitShutdown") {
				break
			}
			if strings.HasPrefix(fn, "runtime.") || strings.Contains(fn, ".runtime_") || strings.HasPrefix(fn, "internal/") || len(calls) == 8 {
				continue
			}
			calls = append(calls, fn[strings.LastIndex(fn, "/")+1:])
		}
		return strings.Join(calls, " < ") + " [" + state + "]"
	}
	return fmt.Sprintf("(goroutine %s not in the dump)", gid)
}

// funcName strips the argument list from a dump's call line.
func funcName(line string) string {
	if i := strings.LastIndex(line, "("); i > 0 && strings.HasSuffix(line, ")") {
		return line[:i]
	}
	return line
}
