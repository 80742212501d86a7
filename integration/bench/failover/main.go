// Command failover benchmarks VIP failover: raftlb (lan and fast timing)
// and keepalived 2.2.7 (VRRPv2 advert_int 1, VRRPv3 advert_int 0.1) in the
// same network-namespace lab, under the same nemeses, with the same
// prober and checkers (integration/nemesis, docs/nemesis.md). Every round
// waits until the system is at rest, sleeps a random phase of its timers,
// injects the fault, waits for recovery and restores. It prints a markdown
// table (gap min/median/p99/max, takeover, dual-holder samples) and, with
// -record, writes it into docs/benchmarks.md between its markers.
//
// As root, from the repository root:
//
//	go run ./integration/bench/failover -rounds 20 -record docs/benchmarks.md
//	go run ./integration/bench/failover -rounds 2 -systems raftlb-fast,keepalived-v3 -nemeses kill-leader,partition -v
//	go run ./integration/bench/failover -systems raftlb-lan,raftlb-fast -stalls 80ms,250ms -rounds 6 -baseline 9a23770
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/integration/nemesis"
	"github.com/raftlb/raftlb/internal/benchrec"
)

// systems the benchmark knows, in table order.
var systemNames = []string{"raftlb-lan", "raftlb-fast", "keepalived-v2", "keepalived-v3", "raftlb-lan-witness", "raftlb-fast-witness"}

const defaultSystems = "raftlb-lan,raftlb-fast,keepalived-v2,keepalived-v3"

func main() {
	rounds := flag.Int("rounds", 20, "rounds per system and nemesis")
	systems := flag.String("systems", defaultSystems, "systems to measure, comma-separated: "+strings.Join(systemNames, ", "))
	nemeses := flag.String("nemeses", "all", "nemeses, comma-separated or all: "+fmt.Sprint(nemesis.AllNemeses))
	record := flag.String("record", "", "write the table into this markdown file between the bench:failover markers (e.g. docs/benchmarks.md)")
	binary := flag.String("binary", "", "raftlb binary to use (default: go build ./cmd/raftlb)")
	settle := flag.Duration("settle", time.Second, "continuous service that counts as recovered / at rest")
	timeout := flag.Duration("timeout", 90*time.Second, "bound of every wait of a round (recovery, at rest); a round that exceeds it fails")
	seed := flag.Uint64("seed", 0, "seed of the random phases (default: the time)")
	verbose := flag.Bool("v", false, "print every round's timeline")
	keep := flag.Bool("keep", false, "keep each lab's daemon logs and configs")
	stalls := flag.String("stalls", "", "instead of the nemeses, freeze the leader for each of these durations (comma-separated, e.g. 250ms,300ms) -rounds times and count elections and VIP moves (raftlb systems only; recorded between the bench:stall markers)")
	baseline := flag.String("baseline", "", "with -stalls: also measure raftlb built from this git revision, in the same run, for comparison")
	flag.Parse()

	p := &program{}
	if os.Geteuid() != 0 {
		p.fatalf("run as root (it creates network namespaces)")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; fmt.Fprintln(os.Stderr, "\ninterrupted: tearing the labs down"); p.exit(130) }()

	ns, err := nemesis.ParseNemeses(*nemeses)
	if err != nil {
		p.fatalf("%v", err)
	}
	var chosen []string
	for _, s := range strings.Split(*systems, ",") {
		s = strings.TrimSpace(s)
		if !contains(systemNames, s) {
			p.fatalf("unknown system %q (have %s)", s, strings.Join(systemNames, ", "))
		}
		chosen = append(chosen, s)
	}
	if *rounds < 1 {
		p.fatalf("-rounds must be at least 1")
	}

	bin := *binary
	if bin == "" {
		work, err := os.MkdirTemp("", "raftlb-failover-")
		if err != nil {
			p.fatalf("%v", err)
		}
		p.cleanup(func() { os.RemoveAll(work) })
		bin = filepath.Join(work, "raftlb")
		fmt.Fprintln(os.Stderr, "building raftlb")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/raftlb").CombinedOutput(); err != nil {
			p.fatalf("go build ./cmd/raftlb (run from the repository root): %v\n%s", err, out)
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	started := time.Now()

	if *stalls != "" {
		runStalls(p, chosen, bin, *baseline, *stalls, *rounds, nemesis.RunnerOptions{Settle: *settle, Timeout: *timeout, Seed: *seed}, *binary, *record, string(load), started)
		p.exit(0)
	}

	var results []nemesis.Result
	var skipped []string
	for _, name := range chosen {
		res, skip := runSystem(p, name, bin, ns, *rounds, nemesis.RunnerOptions{Settle: *settle, Timeout: *timeout, Seed: *seed}, *verbose, *keep)
		if skip != "" {
			fmt.Fprintf(os.Stderr, "%s: SKIPPED: %s\n", name, skip)
			skipped = append(skipped, name+": "+skip)
		}
		results = append(results, res...)
	}

	table := render(results, skipped, *rounds, chosen, *nemeses, *settle, *timeout, string(load), started)
	fmt.Print(table)
	if *record != "" {
		if err := benchrec.Record(*record, "failover", "Failover: raftlb and keepalived under the nemesis suite", table); err != nil {
			p.fatalf("record: %v", err)
		}
	}
	p.exit(0)
}

// runSystem measures one system in a lab of its own and tears it down.
func runSystem(p *program, name, bin string, ns []nemesis.Nemesis, rounds int, ro nemesis.RunnerOptions, verbose, keep bool) (out []nemesis.Result, skip string) {
	if strings.HasPrefix(name, "keepalived") {
		if err := ensureKeepalived(); err != nil {
			return nil, err.Error()
		}
	}
	if strings.HasSuffix(name, "-witness") && !nemesis.HasWitness(bin) {
		return nil, "this raftlb has no -witness flag"
	}
	// One lab per system; rebuilt when a round leaves it broken.
	var (
		scope  *labScope
		runner *nemesis.Runner
	)
	build := func() (err error) {
		scope, runner, err = startLab(p, name, bin, ro, keep)
		return err
	}
	if err := build(); err != nil {
		return nil, fmt.Sprintf("could not start: %v", err)
	}
	defer func() { scope.close() }()
	for _, n := range ns {
		for i := range rounds {
			res := runner.Round(n)
			fmt.Fprintf(os.Stderr, "%s round %d/%d: %s\n", time.Now().Format("15:04:05"), i+1, rounds, res)
			if verbose || res.Err != nil || len(res.DualAddr)+len(res.DualARP) > 0 {
				for _, l := range res.Timeline {
					fmt.Fprintln(os.Stderr, "    "+l)
				}
			}
			if res.Err != nil {
				fmt.Fprintln(os.Stderr, runner.Sys.Logs(3000))
			}
			out = append(out, res)
			if res.Err != nil && strings.Contains(res.Err.Error(), "after the round") {
				fmt.Fprintf(os.Stderr, "%s: rebuilding the lab\n", name)
				scope.close()
				if err := build(); err != nil {
					return out, fmt.Sprintf("could not restart after a failed round: %v", err)
				}
			}
		}
	}
	return out, ""
}

// runStalls is the -stalls mode: how long a leader stall each raftlb
// profile tolerates before the cluster elects another leader (a false
// failover, docs/fencing.md); with a baseline revision, that build is
// measured the same way right after.
func runStalls(p *program, systems []string, bin, baseline, list string, rounds int, ro nemesis.RunnerOptions, binaryFlag, record, load string, started time.Time) {
	var ds []time.Duration
	for _, f := range strings.Split(list, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			p.fatalf("-stalls: %q is not a positive duration", f)
		}
		ds = append(ds, d)
	}
	for _, name := range systems {
		if !strings.HasPrefix(name, "raftlb") {
			p.fatalf("-stalls measures raftlb systems only, not %s", name)
		}
	}
	builds := []struct{ label, bin string }{{"", bin}}
	if baseline != "" {
		builds = append(builds, struct{ label, bin string }{" @" + baseline, buildRevision(p, baseline)})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", started.UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine())
	cmd := fmt.Sprintf("go run ./integration/bench/failover -systems %s -stalls %s -rounds %d", strings.Join(systems, ","), list, rounds)
	if baseline != "" {
		cmd += " -baseline " + baseline
	}
	if binaryFlag != "" {
		cmd += " -binary " + binaryFlag
	}
	fmt.Fprintf(&b, "Command: `%s` (as root, from the repository root). Load average when it started: %s.\n\n", cmd, strings.TrimSpace(load))
	b.WriteString("The leader is frozen (SIGSTOP, then SIGCONT) for the stall at a random phase of the heartbeat; " +
		"elected: the raft term changed; moved: another director held the VIPs (a false failover). " +
		"Rows marked @REV are raftlb built from that revision, measured in the same run.\n\n")
	b.WriteString("| system | stall | rounds | elected | VIPs moved |\n|---|---|---|---|---|\n")
	for _, build := range builds {
		for _, name := range systems {
			scope, runner, err := startLab(p, name, build.bin, ro, false)
			if err != nil {
				p.fatalf("%s%s: could not start: %v", name, build.label, err)
			}
			for _, d := range ds {
				elected, moved, failed := 0, 0, 0
				for i := range rounds {
					res := runner.Stall(d)
					fmt.Fprintf(os.Stderr, "%s round %d/%d: %s%s\n", time.Now().Format("15:04:05"), i+1, rounds, res, build.label)
					if res.Err != nil {
						failed++
						continue
					}
					if res.Elected {
						elected++
					}
					if res.Moved {
						moved++
					}
				}
				r := fmt.Sprint(rounds - failed)
				if failed > 0 {
					r += fmt.Sprintf(" (+%d failed)", failed)
				}
				fmt.Fprintf(&b, "| %s%s | %v | %s | %d | %d |\n", strings.Replace(name, "-", " ", 1), build.label, d, r, elected, moved)
			}
			scope.close()
		}
	}
	fmt.Fprintf(&b, "\nTook %v.\n", time.Since(started).Round(time.Second))
	fmt.Print(b.String())
	if record != "" {
		if err := benchrec.Record(record, "stall", "Stall tolerance: false failovers after a frozen leader", b.String()); err != nil {
			p.fatalf("record: %v", err)
		}
	}
}

// buildRevision builds ./cmd/raftlb at a git revision (in a temporary
// worktree) and returns the binary's path.
func buildRevision(p *program, rev string) string {
	work, err := os.MkdirTemp("", "raftlb-baseline-")
	if err != nil {
		p.fatalf("%v", err)
	}
	p.cleanup(func() { os.RemoveAll(work); _ = exec.Command("git", "worktree", "prune").Run() })
	tree := filepath.Join(work, "tree")
	if out, err := exec.Command("git", "worktree", "add", "--detach", tree, rev).CombinedOutput(); err != nil {
		p.fatalf("-baseline %s: git worktree add: %v\n%s", rev, err, out)
	}
	defer exec.Command("git", "worktree", "remove", "--force", tree).Run()
	bin := filepath.Join(work, "raftlb")
	fmt.Fprintf(os.Stderr, "building raftlb at %s\n", rev)
	build := exec.Command("go", "build", "-o", bin, "./cmd/raftlb")
	build.Dir = tree
	if out, err := build.CombinedOutput(); err != nil {
		p.fatalf("-baseline %s: go build: %v\n%s", rev, err, out)
	}
	return bin
}

// startLab starts system name in a lab of its own, with a runner.
func startLab(p *program, name, bin string, ro nemesis.RunnerOptions, keep bool) (*labScope, *nemesis.Runner, error) {
	scope := &labScope{p: p}
	o := nemesis.Options{Directors: 3, KeepDir: keep}
	if strings.HasSuffix(name, "-witness") {
		o = nemesis.Options{Directors: 2, Witness: true, KeepDir: keep}
	}
	lab := nemesis.NewLab(scope, o)
	var sys nemesis.System
	switch {
	case strings.HasPrefix(name, "raftlb-lan"):
		sys = nemesis.NewRaftlb(lab, nemesis.RaftlbOptions{Binary: bin, Profile: "lan"})
	case strings.HasPrefix(name, "raftlb-fast"):
		sys = nemesis.NewRaftlb(lab, nemesis.RaftlbOptions{Binary: bin, Profile: "fast"})
	case name == "keepalived-v2":
		sys = nemesis.NewKeepalived(lab, nemesis.KeepalivedOptions{Version: 2, Advert: "1"})
	case name == "keepalived-v3":
		sys = nemesis.NewKeepalived(lab, nemesis.KeepalivedOptions{Version: 3, Advert: "0.1"})
	}
	runner, err := nemesis.NewRunner(lab, sys, ro)
	if err != nil {
		scope.close()
		return nil, nil, err
	}
	scope.Cleanup(runner.Close)
	return scope, runner, nil
}

// ensureKeepalived installs the Debian package if keepalived is missing.
func ensureKeepalived() error {
	if _, err := exec.LookPath("keepalived"); err == nil {
		return nil
	}
	fmt.Fprintln(os.Stderr, "keepalived missing: apt-get install -y keepalived")
	cmd := exec.Command("apt-get", "install", "-y", "keepalived")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("keepalived is not installed and apt-get install failed: %v: %s", err, tailStr(string(out), 400))
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		return nemesis.ErrNoKeepalived
	}
	return nil
}

func keepalivedVersion() string {
	out, _ := exec.Command("keepalived", "--version").CombinedOutput()
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	pkg, _ := exec.Command("dpkg-query", "-W", "-f", "${Version}", "keepalived").Output()
	if len(pkg) > 0 {
		return fmt.Sprintf("%s (Debian package %s)", first, pkg)
	}
	return first
}

func render(results []nemesis.Result, skipped []string, rounds int, systems []string, nemeses string, settle, timeout time.Duration, load string, started time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", started.UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine())
	cmd := fmt.Sprintf("go run ./integration/bench/failover -rounds %d", rounds)
	if strings.Join(systems, ",") != defaultSystems {
		cmd += " -systems " + strings.Join(systems, ",")
	}
	if nemeses != "all" {
		cmd += " -nemeses " + nemeses
	}
	if settle != time.Second {
		cmd += " -settle " + settle.String()
	}
	if timeout != 90*time.Second {
		cmd += " -timeout " + timeout.String()
	}
	fmt.Fprintf(&b, "Command: `%s -record docs/benchmarks.md` (as root, from the repository root)\n\n", cmd)
	fmt.Fprintf(&b, "Load average when it started: %s. Took %v.\n\n", strings.TrimSpace(load), time.Since(started).Round(time.Second))
	for _, s := range systems {
		if strings.HasPrefix(s, "keepalived") {
			fmt.Fprintf(&b, "keepalived: %s, `--vrrp`, priorities 150/100/50, preempt; a static nftables DNAT table stands in for IPVS.\n\n", keepalivedVersion())
			break
		}
	}
	b.WriteString("Lab, nemeses and definitions: docs/nemesis.md. Gap: the longest time without a successful new TCP connection " +
		"(one every 10 ms, 200 ms timeout) from 1 s before the fault until the client had been served for the settle time after the " +
		"nemesis' last step. Takeover: fault → first checker sample with another director holding the VIP. Restore gap: the same from then until the " +
		"system was at rest again (the stopped director started again, keepalived's priority 150 preempting back). Dual-holder samples: address checker (address, plus a live kernel-fence lease for raftlb, " +
		"every 10 ms) / ARP checker (two MACs answering one ARP request for the VIP); in brackets the rounds that had any.\n\n")
	b.WriteString("| system | nemesis | rounds | gap min | gap median | gap p99 | gap max | takeover median | restore gap max | dual-holder samples addr / ARP |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range nemesis.Summarize(results) {
		r := fmt.Sprint(s.Rounds)
		if s.Errors > 0 {
			r += fmt.Sprintf(" (+%d failed)", s.Errors)
		}
		gaps := []string{"-", "-", "-", "-"}
		if s.Rounds > 0 {
			gaps = []string{sec(s.GapMin), sec(s.GapMedian), sec(s.GapP99), sec(s.GapMax)}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d (%d) |\n", s.System, s.Nemesis, r,
			gaps[0], gaps[1], gaps[2], gaps[3], sec(s.TakeoverMedian), sec(s.RestoreGapMax), s.DualAddr, s.DualARP, s.RoundsWithDual)
	}
	for _, s := range skipped {
		fmt.Fprintf(&b, "\nSkipped: %s\n", s)
	}
	return b.String()
}

func sec(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func tailStr(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// program holds the program-wide cleanups (the temporary binary) and
// every open lab scope, so an interrupt or a fatal error tears all down.
type program struct {
	mu       sync.Mutex
	cleanups []func()
	scopes   map[*labScope]bool
}

func (p *program) cleanup(f func()) { p.mu.Lock(); p.cleanups = append(p.cleanups, f); p.mu.Unlock() }

func (p *program) fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "failover: "+f+"\n", a...)
	p.exit(1)
}

func (p *program) exit(code int) {
	p.mu.Lock()
	var scopes []*labScope
	for s := range p.scopes {
		scopes = append(scopes, s)
	}
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for _, s := range scopes {
		s.close()
	}
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	os.Exit(code)
}

// labScope is netlab.T for one lab: its cleanups run when the system is
// done (or the lab is rebuilt); Fatal tears everything down and exits.
type labScope struct {
	p        *program
	mu       sync.Mutex
	cleanups []func()
	closed   bool
}

func (s *labScope) register() {
	s.p.mu.Lock()
	if s.p.scopes == nil {
		s.p.scopes = map[*labScope]bool{}
	}
	s.p.scopes[s] = true
	s.p.mu.Unlock()
}

func (s *labScope) Helper()                 {}
func (s *labScope) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (s *labScope) Skip(a ...any)           { s.p.fatalf("%s", fmt.Sprint(a...)) }
func (s *labScope) Fatal(a ...any)          { s.p.fatalf("%s", fmt.Sprint(a...)) }
func (s *labScope) Fatalf(f string, a ...any) {
	s.p.fatalf(f, a...)
}
func (s *labScope) Cleanup(f func()) {
	s.mu.Lock()
	if len(s.cleanups) == 0 {
		s.register()
	}
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

func (s *labScope) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	cs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	s.p.mu.Lock()
	delete(s.p.scopes, s)
	s.p.mu.Unlock()
}
