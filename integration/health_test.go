package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/internal/netlab"
)

// Health checks in the namespace lab (nsLab): three real agents with the
// nft dataplane probe two real servers, gossip what they see, and the
// leader commits the decision that every director's dataplane follows.

// rsServer is an HTTP server in a real server's namespace that can be
// stopped and started again (the lab's own servers on :80 run for good;
// these listen on :8080).
type rsServer struct {
	t        *testing.T
	ns, addr string
	body     string
	mu       sync.Mutex
	srv      *http.Server
}

func newRSServer(t *testing.T, ns, addr, body string) *rsServer {
	s := &rsServer{t: t, ns: ns, addr: addr, body: body}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *rsServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	ln, err := netlab.Listen(s.ns, "tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, s.body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
}

func (s *rsServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// health reads director i's /v1/health for service web.
func (l *nsLab) health(i int) (wire.HealthReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return l.api(i).Health(ctx, "web", client.ReadOpts{})
}

// realHealth returns director i's report of real server key of web.
func (l *nsLab) realHealth(i int, key string) (wire.RealHealthReport, bool) {
	rep, err := l.health(i)
	if err != nil || len(rep.Services) != 1 {
		return wire.RealHealthReport{}, false
	}
	for _, r := range rep.Services[0].Reals {
		if r.Key == key {
			return r, true
		}
	}
	return wire.RealHealthReport{}, false
}

// viewsOf summarises views as "d1:up d2:down".
func viewsOf(r wire.RealHealthReport) string {
	var parts []string
	for _, v := range r.Views {
		s := v.Director + ":down"
		if v.Up {
			s = v.Director + ":up"
		}
		if !v.Live {
			s += "(not live)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// programmed reports whether director i's nft ruleset sends traffic to
// addr (read in its namespace).
func (l *nsLab) programmed(i int, addr string) bool {
	out, err := l.lab.Run(l.dirs[i], "nft", "list", "ruleset")
	return err == nil && strings.Contains(out, addr)
}

// configureChecked adds the lab's VIPs and service web with an HTTP check
// through the CLI, and its two real servers on :8080.
func (l *nsLab) configureChecked(checkArgs ...string) (leader, follower int) {
	l.t.Helper()
	leader = l.leader()
	follower = (leader + 1) % 3
	l.cli(follower, "vip", "add", "10.10.0.100/24", "-interface", "eth0", "-group", "lab")
	l.cli(follower, "vip", "add", "10.20.0.1/24", "-interface", "eth1", "-group", "lab")
	l.cli(follower, append([]string{"service", "add", "web", "-t", "10.10.0.100:80", "-s", "rr"}, checkArgs...)...)
	l.cli(follower, "real", "add", "web", "10.20.0.11:8080")
	l.cli(follower, "real", "add", "web", "10.20.0.12:8080")
	return leader, follower
}

// restart starts director i's agent again with the same command line.
func (l *nsLab) restart(i int) {
	l.t.Helper()
	old := l.procs[i]
	f, err := os.OpenFile(l.logs[i], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command(old.Path, old.Args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.procs[i] = cmd
}

const (
	checkInterval = 200 * time.Millisecond
	checkFall     = 3
	checkRise     = 2
)

var checkArgs = []string{"-check", "http", "-path", "/", "-interval", checkInterval.String(), "-timeout", "150ms",
	"-fall", fmt.Sprint(checkFall), "-rise", fmt.Sprint(checkRise)}

// TestHealthChecksThreeDirectors: (a) a stopped real server leaves every
// director's dataplane within fall × interval plus a margin, and `real
// list` shows the decision and the three views; (b) one director that
// cannot reach a real server dissents, and under the majority policy
// nothing changes; (c) a flapping server makes a bounded number of
// transitions; (d) a director that leaves gossip leaves the live set and
// comes back when it restarts.
func TestHealthChecksThreeDirectors(t *testing.T) {
	l := newNSLab(t)
	rs1 := newRSServer(t, netlab.Name("rs1"), "10.20.0.11:8080", "rs1")
	rs2 := newRSServer(t, netlab.Name("rs2"), "10.20.0.12:8080", "rs2")
	ld, f := l.configureChecked(checkArgs...)
	const k1, k2 = "10.20.0.11:8080", "10.20.0.12:8080"
	l.waitFor("both real servers on every director and three views up", func() bool {
		for i := range l.dirs {
			if l.dests(i) != 2 {
				return false
			}
			r, ok := l.realHealth(i, k1)
			if !ok || viewsOf(r) != "d1:up d2:up d3:up" {
				return false
			}
		}
		return true
	})
	if c := l.round(4); c["rs1"] != 2 || c["rs2"] != 2 {
		t.Fatalf("traffic before: %v", c)
	}

	// (a) Stop rs1.
	rs1.stop()
	start := time.Now()
	gone := make([]time.Duration, 3)
	l.waitFor("rs1 out of every director's dataplane", func() bool {
		all := true
		for i := range l.dirs {
			if gone[i] == 0 {
				if l.dests(i) == 1 {
					gone[i] = time.Since(start)
				} else {
					all = false
				}
			}
		}
		return all
	})
	bound := checkFall*checkInterval + 100*time.Millisecond
	t.Logf("rs1 left the dataplanes after %v (fall × interval + 100 ms = %v)", gone, bound)
	for i, d := range gone {
		// Polling adds up to a few tens of ms; 2 cores shared with three
		// agents add more: allow a margin over the target.
		if d > bound+900*time.Millisecond {
			t.Errorf("d%d: rs1 left its dataplane after %v, want about %v", i+1, d, bound)
		}
		if l.programmed(i, "10.20.0.11") {
			t.Errorf("d%d: the nft ruleset still has rs1", i+1)
		}
	}
	// The views travel by gossip: wait until f has all three.
	l.waitFor("three down views on "+fmt.Sprintf("d%d", f+1), func() bool {
		r, ok := l.realHealth(f, k1)
		return ok && viewsOf(r) == "d1:down d2:down d3:down"
	})
	out := l.cli(f, "real", "list", "web")
	t.Logf("real list web:\n%s", out)
	for _, want := range []string{"Health", "Views", "Latency", "d1:down(", "d2:down(", "d3:down(", "see it down"} {
		if !strings.Contains(out, want) {
			t.Errorf("real list does not show %q", want)
		}
	}
	if c := l.round(4); c["rs2"] != 4 {
		t.Fatalf("traffic with rs1 down: %v", c)
	}
	rs1.start()
	l.waitFor("rs1 back on every director", func() bool {
		return l.dests(0) == 2 && l.dests(1) == 2 && l.dests(2) == 2
	})

	// (b) Cut one follower's path to rs2: it dissents, nothing changes.
	cut := (ld + 2) % 3
	cutID := fmt.Sprintf("d%d", cut+1)
	l.lab.MustRun(l.dirs[cut], "nft", "add", "table", "inet", "hcut")
	l.lab.MustRun(l.dirs[cut], "nft", "add", "chain", "inet", "hcut", "out", "{ type filter hook output priority 0 ; }")
	l.lab.MustRun(l.dirs[cut], "nft", "add", "rule", "inet", "hcut", "out", "ip", "daddr", "10.20.0.12", "drop")
	l.waitFor("the cut director's dissent on every director", func() bool {
		for i := range l.dirs {
			r, ok := l.realHealth(i, k2)
			if !ok || !strings.Contains(viewsOf(r), cutID+":down") {
				return false
			}
		}
		return true
	})
	time.Sleep(checkFall * checkInterval) // time for a (wrong) decision to show
	for i := range l.dirs {
		r, _ := l.realHealth(i, k2)
		if r.Decision == "down" || l.dests(i) != 2 {
			t.Fatalf("d%d: one dissenting director changed the decision: %+v, %v destinations", i+1, r, l.dests(i))
		}
	}
	out = l.cli(f, "real", "list", "web")
	t.Logf("real list web with %s cut off from rs2:\n%s", cutID, out)
	if !strings.Contains(out, cutID+":down(timeout)") {
		t.Errorf("real list does not show %s's dissent", cutID)
	}
	l.lab.MustRun(l.dirs[cut], "nft", "delete", "table", "inet", "hcut")
	l.waitFor("the dissent to end", func() bool {
		r, ok := l.realHealth(ld, k2)
		return ok && viewsOf(r) == "d1:up d2:up d3:up"
	})

	// (c) rs2 flaps: 200 ms down, 200 ms up, 12 times. Without rise/fall
	// each edge could be a transition (24); with fall 3 a down spell never
	// lasts three checks.
	before := decider(l, ld)
	for range 12 {
		rs2.stop()
		time.Sleep(200 * time.Millisecond)
		rs2.start()
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(checkRise*checkInterval + 300*time.Millisecond)
	after := decider(l, ld)
	n := after.Transitions - before.Transitions
	t.Logf("flapping: %d transitions committed for 24 edges (decider %+v)", n, after)
	if n > 2 {
		t.Errorf("flapping rs2 made %d transitions, want at most 2", n)
	}
	l.waitFor("rs2 up everywhere after flapping", func() bool {
		r, ok := l.realHealth(ld, k2)
		return ok && r.Decision != "down" && l.dests(0) == 2 && l.dests(1) == 2 && l.dests(2) == 2
	})

	// (d) A follower leaves gossip (SIGTERM) and comes back.
	if err := l.procs[f].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _ = l.procs[f].Process.Wait()
	fID := fmt.Sprintf("d%d", f+1)
	l.waitFor(fID+" out of the live set", func() bool {
		rep, err := l.health(ld)
		if err != nil {
			return false
		}
		for _, d := range rep.Directors {
			if d.ID == fID && (d.Live || d.Gossip != "left") {
				return false
			}
		}
		r, ok := l.realHealth(ld, k1)
		return ok && !strings.Contains(viewsOf(r), fID)
	})
	l.restart(f)
	l.waitFor(fID+" back with its view", func() bool {
		r, ok := l.realHealth(ld, k1)
		return ok && viewsOf(r) == "d1:up d2:up d3:up"
	})
	rep, err := l.health(ld)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Directors {
		if !d.Live || d.Gossip != "alive" {
			t.Errorf("after the restart: %+v", d)
		}
	}
}

func decider(l *nsLab, i int) wire.DeciderStats {
	l.t.Helper()
	rep, err := l.health(i)
	if err != nil {
		l.t.Fatal(err)
	}
	if !rep.Leader {
		l.t.Fatalf("d%d no longer leads", i+1)
	}
	return rep.Decider
}
