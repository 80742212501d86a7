// Command demo builds a small LVS-NAT lab in network namespaces, runs three
// real `raftlb agent` directors, configures them with the real CLI, sends
// requests to the VIP from a client and prints which real server answered
// each; then it kills the leader while the client keeps sending requests
// and prints the gap the client saw, and does the same for a planned
// handover (SIGTERM). It tears the lab down at the end. It uses IPVS where
// the kernel has it and nftables otherwise, and says which. Run it as root:
// `make demo`.
//
//	client 10.10.0.50 ──┐ br-client ┌── dirN eth0 10.10.0.N+1 (+ VIP 10.10.0.100 on the leader)
//	                                     dirN eth1 10.20.0.N+1 (+ gateway VIP 10.20.0.1 on the leader)
//	rs1 10.20.0.11, rs2 10.20.0.12 ── br-server ──┘   (default route via 10.20.0.1)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/trust"
)

// program adapts netlab.T for a program: Fatal cleans up and exits.
type program struct {
	mu       sync.Mutex
	cleanups []func()
}

func (p *program) Helper()                 {}
func (p *program) Logf(f string, a ...any) { fmt.Printf(f+"\n", a...) }
func (p *program) Skip(a ...any)           { fmt.Println(a...); p.exit(0) }
func (p *program) Fatal(a ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"demo:"}, a...)...)
	p.exit(1)
}
func (p *program) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+f+"\n", a...)
	p.exit(1)
}
func (p *program) Cleanup(f func()) { p.mu.Lock(); p.cleanups = append(p.cleanups, f); p.mu.Unlock() }

func (p *program) cleanup() {
	p.mu.Lock()
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (p *program) exit(code int) {
	p.cleanup()
	os.Exit(code)
}

func main() {
	requests := flag.Int("requests", 8, "requests per round")
	timing := flag.String("timing", "lan", "raft timing profile of the directors: lan or fast")
	flag.Parse()
	p := &program{}
	if os.Geteuid() != 0 {
		p.Fatal("run as root (it creates network namespaces): sudo make demo")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sigs; fmt.Println("\ninterrupted: tearing the lab down"); p.exit(130) }()

	work, err := os.MkdirTemp("", "raftlb-demo-")
	if err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { os.RemoveAll(work) })
	bin := filepath.Join(work, "raftlb")
	step("building raftlb")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/raftlb").CombinedOutput(); err != nil {
		p.Fatalf("go build: %v\n%s", err, out)
	}

	step("building the lab: a client, three directors and two real servers in network namespaces")
	lab := netlab.New(p)
	sw := lab.Netns("sw")
	lab.Bridge(sw, "br-client")
	lab.Bridge(sw, "br-server")
	client, rs1, rs2 := lab.Netns("client"), lab.Netns("rs1"), lab.Netns("rs2")
	lab.Attach(client, "eth0", sw, "br-client", "p-client")
	lab.Addr(client, "eth0", "10.10.0.50/24")
	// One token for the cluster: it authenticates the API and derives the
	// CA that issues every director's certificate (raft mutual TLS, HTTPS).
	secret := trust.NewToken()
	token := filepath.Join(work, "token")
	if err := os.WriteFile(token, []byte(secret+"\n"), 0o600); err != nil {
		p.Fatal(err)
	}
	ca, err := trust.FromTokens([]string{secret})
	if err != nil {
		p.Fatal(err)
	}
	var dirs, ips, peers []string
	for i := range 3 {
		ns := lab.Netns(fmt.Sprintf("dir%d", i+1))
		lab.Attach(ns, "eth0", sw, "br-client", fmt.Sprintf("p-dir%dc", i+1))
		lab.Attach(ns, "eth1", sw, "br-server", fmt.Sprintf("p-dir%ds", i+1))
		ip := fmt.Sprintf("10.10.0.%d", i+2)
		lab.Addr(ns, "eth0", ip+"/24")
		lab.Addr(ns, "eth1", fmt.Sprintf("10.20.0.%d/24", i+2))
		lab.MustRun(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		dirs, ips = append(dirs, ns), append(ips, ip)
		peers = append(peers, fmt.Sprintf("d%d=%s:7481", i+1, ip))
	}
	for i, rs := range []string{rs1, rs2} {
		lab.Attach(rs, "eth0", sw, "br-server", fmt.Sprintf("p-rs%d", i+1))
		lab.Addr(rs, "eth0", fmt.Sprintf("10.20.0.%d/24", 11+i))
		lab.MustRun(rs, "ip", "route", "add", "default", "via", "10.20.0.1") // the gateway VIP
		lab.Serve(rs, fmt.Sprintf("10.20.0.%d:80", 11+i), fmt.Sprintf("rs%d", i+1))
	}

	step("starting `raftlb agent` on dir1, dir2, dir3 (timing profile " + *timing + ", dataplane auto)")
	procs := make([]*exec.Cmd, 3)
	logs := make([]string, 3)
	startAgent := func(i int) {
		logs[i] = filepath.Join(work, fmt.Sprintf("d%d.log", i+1))
		logf, err := os.OpenFile(logs[i], os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			p.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", dirs[i], bin, "agent", "-node-id", fmt.Sprintf("d%d", i+1),
			"-data-dir", filepath.Join(work, fmt.Sprintf("d%d", i+1)), "-raft-addr", ips[i]+":7481", "-api-addr", ips[i]+":7480",
			"-token-file", token, "-peers", strings.Join(peers, ","), "-timing", *timing, "-dataplane", "auto", "-resync", "5s")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			p.Fatal(err)
		}
		procs[i] = cmd
		go func() { _ = cmd.Wait(); logf.Close() }()
	}
	for i := range 3 {
		startAgent(i)
	}
	p.Cleanup(func() {
		for _, c := range procs {
			if c != nil && c.Process != nil {
				_ = c.Process.Kill()
			}
		}
		time.Sleep(100 * time.Millisecond)
	})
	apis := make([]*http.Client, 3)
	for i := range 3 {
		apis[i] = netlab.HTTPClient(dirs[i], time.Second)
		apis[i].Transport.(*http.Transport).TLSClientConfig = ca.ClientConfig()
	}
	statusOf := func(i int) map[string]any { return status(apis[i], "https://"+ips[i]+":7480", secret) }
	leader := func() int {
		for i := range 3 {
			if st := statusOf(i); st != nil && st["role"] == "leader" {
				return i
			}
		}
		return -1
	}
	waitFor(p, "a leader", 20*time.Second, func() bool { return leader() >= 0 })
	dp, _ := statusOf(leader())["dataplane"].(map[string]any)
	fmt.Printf("   dataplane: %v (IPVS where the kernel has it, nftables otherwise)\n", dp["backend"])

	cliOn := func(i int, args ...string) {
		fmt.Printf("   [dir%d] $ raftlb %s\n", i+1, strings.Join(args, " "))
		cmd := exec.Command("ip", append([]string{"netns", "exec", dirs[i], bin}, args...)...)
		cmd.Env = append(os.Environ(), "RAFTLB_ADDR="+ips[i]+":7480", "RAFTLB_TOKEN="+secret) // host:port: HTTPS, verified with the token's CA
		out, err := cmd.CombinedOutput()
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			fmt.Println("     " + l)
		}
		if err != nil {
			fmt.Printf("   agent log: %s\n", tail(logs[i]))
			p.Fatalf("raftlb %s: %v", strings.Join(args, " "), err)
		}
	}
	cli := func(args ...string) { cliOn(0, args...) }
	// holder is the director whose lease says it holds the VIPs and that
	// has the address (a SIGKILLed director keeps the address, fenced by
	// its kernel, and answers nothing).
	holder := func() int {
		for i := range 3 {
			v, _ := statusOf(i)["vips"].(map[string]any)
			lease, _ := v["lease"].(map[string]any)
			if lease["holding"] != true {
				continue
			}
			if out, _ := lab.Run(dirs[i], "ip", "-o", "addr", "show", "dev", "eth0"); strings.Contains(out, "10.10.0.100/") {
				return i
			}
		}
		return -1
	}
	step("configuring the cluster through the CLI on dir1 (writes are forwarded to the leader)")
	cli("vip", "add", "10.10.0.100/24", "-interface", "eth0", "-group", "demo")
	cli("vip", "add", "10.20.0.1/24", "-interface", "eth1", "-group", "demo")
	cli("service", "add", "web", "-t", "10.10.0.100:80", "-s", "rr")
	cli("real", "add", "web", "10.20.0.11:80")
	cli("real", "add", "web", "10.20.0.12:80")
	cli("service", "list")
	waitFor(p, "the VIP on the leader and the service in every director's kernel", 15*time.Second, func() bool {
		for i := range 3 {
			dp, _ := statusOf(i)["dataplane"].(map[string]any)
			if dp["destinations"] != float64(2) {
				return false
			}
		}
		return holder() >= 0
	})
	fmt.Printf("   the VIP is on dir%d (the leader); every director programmed the service (hot standby)\n", holder()+1)
	web := netlab.HTTPClient(client, 2*time.Second)
	round := func(title string) {
		step(title)
		counts := map[string]int{}
		for i := 1; i <= *requests; i++ {
			who := get(web, "http://10.10.0.100/")
			counts[who]++
			fmt.Printf("   request %2d -> %s\n", i, who)
		}
		fmt.Printf("   answered: rs1 %d, rs2 %d\n", counts["rs1"], counts["rs2"])
	}
	round(fmt.Sprintf("client -> VIP 10.10.0.100:80, %d requests (rr)", *requests))

	// kernelOps waits until the reconciler has made n more kernel
	// operations than before.
	kernelOps := func() float64 {
		dp, _ := statusOf(0)["dataplane"].(map[string]any)
		n, _ := dp["kernel_ops"].(float64)
		return n
	}
	settle := func(before, n float64) {
		waitFor(p, "the change in the kernel", 10*time.Second, func() bool { return kernelOps() >= before+n })
	}

	step("weights: rs1 3, rs2 1 with wrr")
	before := kernelOps()
	cli("service", "update", "web", "-s", "wrr")
	cli("real", "update", "web", "10.20.0.11:80", "-w", "3")
	settle(before, 2) // one service update, one destination update
	round(fmt.Sprintf("client -> VIP, %d requests (wrr 3:1)", *requests))

	step("draining rs2: no new connections")
	before = kernelOps()
	cli("real", "drain", "web", "10.20.0.12:80")
	settle(before, 1)
	round(fmt.Sprintf("client -> VIP, %d requests (rs2 draining)", *requests))
	cli("real", "update", "web", "10.20.0.12:80", "-state", "enabled")

	// Live failovers: the client sends a request on a new connection every
	// 10 ms throughout; the gap is the longest time without an answer.
	failover := func(title string, hit func(i int), restart bool) {
		ld := leader()
		step(fmt.Sprintf("%s: dir%d leads and holds the VIP; the client sends a request every 10 ms", title, ld+1))
		pr := startProber(client)
		time.Sleep(500 * time.Millisecond)
		fmt.Printf("   %s dir%d\n", title, ld+1)
		hit(ld)
		waitFor(p, "another director to hold the VIP and serve", 15*time.Second, func() bool {
			h := holder()
			return h >= 0 && h != ld && pr.servedSince(time.Now().Add(-100*time.Millisecond))
		})
		time.Sleep(300 * time.Millisecond)
		gap, failed := pr.stop()
		fmt.Printf("   dir%d now leads and holds the VIP\n", holder()+1)
		fmt.Printf("   the client saw a gap of %v (%d requests failed or timed out)\n", gap.Round(time.Millisecond), failed)
		if restart {
			startAgent(ld)
			waitFor(p, fmt.Sprintf("dir%d to rejoin as a follower", ld+1), 20*time.Second, func() bool {
				st := statusOf(ld)
				return st != nil && st["role"] == "follower"
			})
			fmt.Printf("   dir%d restarted and rejoined as a follower, holding no VIP\n", ld+1)
		}
	}
	failover("crash: kill -9 of the leader's agent", func(i int) { _ = procs[i].Process.Signal(syscall.SIGKILL) }, true)
	failover("planned handover: SIGTERM to the leader's agent", func(i int) { _ = procs[i].Process.Signal(syscall.SIGTERM) }, true)
	cliOn(holder(), "status")

	// Health checks: every director probes, the leader decides.
	dests := func(n float64) func() bool {
		return func() bool {
			for i := range 3 {
				dp, _ := statusOf(i)["dataplane"].(map[string]any)
				if dp["destinations"] != n {
					return false
				}
			}
			return true
		}
	}
	step("health checks: an HTTP check on web, probed by every director")
	cli("service", "update", "web", "--check", "http", "--path", "/", "--expect", "200-299", "--interval", "500ms", "--timeout", "300ms", "--rise", "2", "--fall", "2")
	step("rs2 stops answering (its port 80 is dropped): it leaves rotation on every director")
	fault := time.Now()
	lab.MustRun(rs2, "nft", "add", "table", "inet", "demo")
	lab.MustRun(rs2, "nft", "add chain inet demo in { type filter hook input priority 0 ; }")
	lab.MustRun(rs2, "nft", "add rule inet demo in tcp dport 80 drop")
	waitFor(p, "rs2 to leave every director's dataplane", 20*time.Second, dests(1))
	fmt.Printf("   rs2 left all three dataplanes %v after it stopped answering (fall 2 × 500 ms + timeout)\n", time.Since(fault).Round(10*time.Millisecond))
	cli("real", "list", "web")
	round(fmt.Sprintf("client -> VIP, %d requests (rs2 down)", *requests))
	step("rs2 answers again: back after rise 2")
	lab.MustRun(rs2, "nft", "delete", "table", "inet", "demo")
	waitFor(p, "rs2 to come back on every director", 20*time.Second, dests(2))
	cli("real", "list", "web")

	step("tearing the lab down")
	p.cleanup()
	fmt.Println("done")
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

func waitFor(p *program, what string, d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			p.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status reads a director's /v1/status (nil if it does not answer).
func status(c *http.Client, base, token string) map[string]any {
	req, _ := http.NewRequest("GET", base+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return nil
	}
	return m
}

// prober sends a request on a new connection every 10 ms (each with a
// 200 ms timeout, overlapping) and records when answers came.
type prober struct {
	mu      sync.Mutex
	ok      []time.Time
	failed  int
	done    chan struct{}
	wg      sync.WaitGroup
	started time.Time
}

func startProber(ns string) *prober {
	pr := &prober{done: make(chan struct{}), started: time.Now()}
	c := netlab.HTTPClient(ns, 200*time.Millisecond)
	pr.wg.Add(1)
	go func() {
		defer pr.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pr.done:
				return
			case <-tick.C:
			}
			pr.wg.Add(1)
			go func() {
				defer pr.wg.Done()
				who := get(c, "http://10.10.0.100/")
				pr.mu.Lock()
				defer pr.mu.Unlock()
				if strings.HasPrefix(who, "rs") {
					pr.ok = append(pr.ok, time.Now())
				} else {
					pr.failed++
				}
			}()
		}
	}()
	return pr
}

// servedSince reports whether a request was answered after t.
func (pr *prober) servedSince(t time.Time) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.ok) > 0 && pr.ok[len(pr.ok)-1].After(t)
}

// stop ends the prober and returns the longest time between answers.
func (pr *prober) stop() (gap time.Duration, failed int) {
	close(pr.done)
	pr.wg.Wait()
	ok := slices.Clone(pr.ok)
	slices.SortFunc(ok, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ok); i++ {
		gap = max(gap, ok[i].Sub(ok[i-1]))
	}
	return gap, pr.failed
}

// get returns the body of one request, or the error in brackets.
func get(c *http.Client, url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "[" + err.Error() + "]"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
