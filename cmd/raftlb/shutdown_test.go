package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stuckStep blocks until release is closed, ignoring any context, as a
// shutdown step stuck in a library would.
func stuckStep(release <-chan struct{}) { <-release }

// TestAwaitShutdown: the agent's exit status and log for each way a
// graceful shutdown can end, and the bound enforced when a step ignores
// its context.
func TestAwaitShutdown(t *testing.T) {
	// The graceful deadline and the hard bound far apart, so a step that
	// honours its deadline always returns before the bound however slow
	// the machine (under load, 30 ms between them let the bound win).
	const graceful, bound, boundWhenStuck = 50 * time.Millisecond, time.Minute, 300 * time.Millisecond
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	cases := []struct {
		name     string
		shutdown func(context.Context) error
		signal   bool
		stuck    bool // the step ignores its context: the bound ends it
		code     int
		log      []string // substrings of the log
		dump     string   // a function the goroutine dump must show ("" = no dump)
	}{
		{name: "finished", shutdown: func(context.Context) error { return nil }, code: 0},
		{name: "failed", shutdown: func(context.Context) error { return errors.New("close raft.db: boom") },
			code: 1, log: []string{"msg=shutdown", "boom"}},
		{name: "a step honours the deadline", shutdown: func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("cluster: shutdown of d1 did not finish: waiting for raft's goroutines to stop: %w", ctx.Err())
		}, code: 1, log: []string{"did not finish within -shutdown-timeout", "waiting for raft's goroutines to stop", "goroutines="},
			dump: "TestAwaitShutdown"},
		{name: "a step ignores it", shutdown: func(context.Context) error { stuckStep(release); return nil }, stuck: true,
			code: 1, log: []string{"exiting with it unfinished", `stuck_in="raftlb.stuckStep < raftlb.TestAwaitShutdown.func`, "goroutines="},
			dump: "cmd/raftlb.stuckStep"},
		{name: "second signal", shutdown: func(context.Context) error { stuckStep(release); return nil }, signal: true,
			code: 1, log: []string{"second signal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			sigs := make(chan os.Signal, 1)
			if c.signal {
				sigs <- syscall.SIGTERM
			}
			dir := t.TempDir()
			hard := bound
			if c.stuck {
				hard = boundWhenStuck
			}
			code := awaitShutdown(c.shutdown, sigs, graceful, hard, log, dir)
			out := logs.String()
			if code != c.code {
				t.Errorf("exit status %d, want %d; log:\n%s", code, c.code, out)
			}
			for _, want := range c.log {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if strings.Count(out, "\n") > 1 {
				t.Errorf("more than one log line:\n%s", out)
			}
			if c.dump == "" {
				return
			}
			m := regexp.MustCompile(`goroutines=(\S+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no dump file in the log:\n%s", out)
			}
			if want := dir + "/" + stacksFile; m[1] != want {
				t.Errorf("dump written to %s, want %s", m[1], want)
			}
			b, err := os.ReadFile(m[1])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), c.dump) {
				t.Errorf("the dump does not show %s:\n%s", c.dump, b)
			}
		})
	}
}

// TestCallChain names a goroutine's calls outside the runtime, innermost
// first, up to awaitShutdown's own frame.
func TestCallChain(t *testing.T) {
	dump := `goroutine 7 [select]:
runtime.gopark(0x1?, 0x2?)
	/usr/local/go/src/runtime/proc.go:435 +0xce
main.other()
	/x/main.go:1 +0x1

goroutine 42 [semacquire, 2 minutes]:
runtime.gopark(0x1?, 0x2?)
	/usr/local/go/src/runtime/proc.go:435 +0xce
sync.runtime_SemacquireWaitGroup(0xc000012345?)
	/usr/local/go/src/runtime/sema.go:110 +0x25
sync.(*WaitGroup).Wait(0xc0000a6000)
	/usr/local/go/src/sync/waitgroup.go:118 +0x48
github.com/hashicorp/raft.(*raftState).waitShutdown(...)
	/root/go/pkg/mod/github.com/hashicorp/raft@v1.7.3/state.go:154
github.com/raftlb/raftlb/agent.(*Agent).Shutdown(0xc000123000, {0xb5f350, 0xc0001f7600})
	/x/agent/agent.go:740 +0x1f
github.com/raftlb/raftlb/cmd/raftlb.awaitShutdown.func1()
	/x/cmd/raftlb/shutdown.go:44 +0x55
created by github.com/raftlb/raftlb/cmd/raftlb.awaitShutdown in goroutine 1
	/x/cmd/raftlb/shutdown.go:42 +0x1a5
`
	want := "sync.(*WaitGroup).Wait < raft.(*raftState).waitShutdown < agent.(*Agent).Shutdown [semacquire, 2 minutes]"
	if got := callChain(dump, "42"); got != want {
		t.Errorf("callChain:\n got %s\nwant %s", got, want)
	}
	if got := callChain(dump, "9"); !strings.Contains(got, "not in the dump") {
		t.Errorf("callChain of a missing goroutine: %s", got)
	}
}
