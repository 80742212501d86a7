package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/model"
)

// kernelWeight returns the weight director i's nftables dataplane gives
// destination addr:port (the dst_ set element's comment, read with nft in
// its namespace), or -1 when it has no such destination.
func (l *nsLab) kernelWeight(i int, addr string, port int) int {
	out, err := l.lab.Run(l.dirs[i], "nft", "list", "ruleset")
	if err != nil {
		return -2
	}
	re := regexp.MustCompile(regexp.QuoteMeta(addr) + ` \. ` + strconv.Itoa(port) + ` comment "weight=(\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	w, _ := strconv.Atoi(m[1])
	return w
}

// decidedWeight returns director i's committed dynamic weight of real
// server key of web (nil: the configured weight) and whether it read it.
func (l *nsLab) decidedWeight(i int, key string) (*int, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	svc, err := l.api(i).Service(ctx, "web", client.ReadOpts{})
	if err != nil {
		return nil, false
	}
	r, ok := svc.Real(key)
	if !ok || r.Health == nil || !r.Health.Up {
		return nil, ok && r.Health == nil
	}
	return r.Health.Weight, true
}

// TestDynamicWeightThreeDirectors: a script check with dynamic on three
// real directors; the script exits with the code a file the test writes
// holds (per checked address). Exit 12 gives rs1 weight 10 in every
// director's kernel (nft), exit 7 weight 5, exit 1 takes it out, exit 0
// brings it back with its configured weight 3; the API and `real list`
// show the decided weight, and the VIP holder's wrr traffic follows it.
func TestDynamicWeightThreeDirectors(t *testing.T) {
	l := newNSLab(t)
	newRSServer(t, netlab.Name("rs1"), "10.20.0.11:8080", "rs1")
	newRSServer(t, netlab.Name("rs2"), "10.20.0.12:8080", "rs2")

	dir := t.TempDir()
	script := filepath.Join(dir, "weight.sh")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
f="$1/$RAFTLB_CHECK_ADDRESS"
[ -f "$f" ] || exit 0
exit "$(cat "$f")"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	setCode := func(addr string, code int) {
		t.Helper()
		tmp := filepath.Join(dir, addr+".tmp")
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(code)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, addr)); err != nil { // the script never reads half a file
			t.Fatal(err)
		}
	}

	leader := l.leader()
	f := (leader + 1) % 3
	l.cli(f, "vip", "add", "10.10.0.100/24", "-interface", "eth0", "-group", "lab")
	l.cli(f, "vip", "add", "10.20.0.1/24", "-interface", "eth1", "-group", "lab")
	l.cli(f, "service", "add", "web", "-t", "10.10.0.100:80", "-s", "wrr", "-check", "script", "-script", script,
		"-script-arg", dir, "-script-dynamic", "-interval", "200ms", "-timeout", "200ms", "-rise", "1", "-fall", "1")
	l.cli(f, "real", "add", "web", "10.20.0.11:8080", "-w", "3")
	l.cli(f, "real", "add", "web", "10.20.0.12:8080", "-w", "1")
	const k1 = "10.20.0.11:8080"

	// until polls cond (which says what it saw) like waitFor, and names
	// the last thing seen when it times out. The bound is generous: this
	// asserts what happens, not how fast (three agents on a loaded
	// machine).
	until := func(what string, cond func() (bool, string)) {
		t.Helper()
		var last string
		start := time.Now()
		deadline := start.Add(60 * time.Second)
		for {
			var ok bool
			if ok, last = cond(); ok {
				t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, last)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	// everywhere waits for rs1's kernel weight want on every director (-1:
	// absent) and, unless absent, the decided dynamic weight; rs2 keeps
	// its configured weight 1 (no file: exit 0).
	everywhere := func(what string, want int, decided *int) {
		t.Helper()
		until(what, func() (bool, string) {
			for i := range l.dirs {
				w1, w2 := l.kernelWeight(i, "10.20.0.11", 8080), l.kernelWeight(i, "10.20.0.12", 8080)
				dw, ok := l.decidedWeight(i, k1)
				seen := fmt.Sprintf("d%d: rs1 %d, rs2 %d, decided %v (read %v)", i+1, w1, w2, fmtPtr(dw), ok)
				if w1 != want || w2 != 1 || want >= 0 && (!ok || !model.SameWeight(dw, decided)) {
					return false, seen
				}
			}
			return true, ""
		})
	}
	traffic := func(what string, n, rs1 int) {
		t.Helper()
		until(what, func() (bool, string) {
			c := l.round(n)
			return c["rs1"] == rs1 && c["rs2"] == n-rs1, fmt.Sprint(c)
		})
	}
	weight := func(n int) *int { return &n }

	everywhere("rs1 with its configured weight 3 on every director", 3, nil)

	setCode("10.20.0.11", 12)
	everywhere("exit 12: weight 10 on every director", 10, weight(10))
	// The views travel by gossip: the decision may come from two of
	// them before the third reaches f.
	until("real list with the decided weight and every view's", func() (bool, string) {
		out := l.cli(f, "real", "list", "web")
		for _, want := range []string{"up w=10", "d1:up(w=10)", "d2:up(w=10)", "d3:up(w=10)", "weight 10 (median of"} {
			if !strings.Contains(out, want) {
				return false, out
			}
		}
		t.Logf("real list web with exit 12:\n%s", out)
		return true, ""
	})
	traffic("wrr 10:1 through the VIP", 11, 10)

	setCode("10.20.0.11", 7)
	everywhere("exit 7: weight 5 on every director", 5, weight(5))
	traffic("wrr 5:1 through the VIP", 6, 5)

	setCode("10.20.0.11", 1)
	everywhere("exit 1: rs1 out of every director's dataplane", -1, nil)
	traffic("only rs2 through the VIP", 4, 0)

	setCode("10.20.0.11", 0)
	everywhere("exit 0: the configured weight 3 again on every director", 3, nil)
	until("real list without a dynamic weight", func() (bool, string) {
		out := l.cli(f, "real", "list", "web")
		return !strings.Contains(out, "w=") && strings.Contains(out, "d1:up d2:up d3:up"), out
	})
}

func fmtPtr(w *int) string {
	if w == nil {
		return "nil"
	}
	return strconv.Itoa(*w)
}
