// Command demo builds a small LVS-NAT lab in network namespaces, runs a real
// `raftlb agent` on a director, configures it with the real CLI, sends
// requests to the VIP from a client and prints which real server answered
// each, then tears the lab down. It uses IPVS where the kernel has it and
// nftables otherwise, and says which. Run it as root: `make demo`.
//
//	client 10.10.0.50 ──┐ br-client ┌── dir1 eth0 10.10.0.2 (+ VIP 10.10.0.100)
//	                                     dir1 eth1 10.20.0.2 (+ gateway VIP 10.20.0.1)
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/internal/netlab"
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

	step("building the lab: a client, a director and two real servers in network namespaces")
	lab := netlab.New(p)
	sw := lab.Netns("sw")
	lab.Bridge(sw, "br-client")
	lab.Bridge(sw, "br-server")
	client, dir1, rs1, rs2 := lab.Netns("client"), lab.Netns("dir1"), lab.Netns("rs1"), lab.Netns("rs2")
	lab.Attach(client, "eth0", sw, "br-client", "p-client")
	lab.Attach(dir1, "eth0", sw, "br-client", "p-dir1c")
	lab.Attach(dir1, "eth1", sw, "br-server", "p-dir1s")
	lab.Attach(rs1, "eth0", sw, "br-server", "p-rs1")
	lab.Attach(rs2, "eth0", sw, "br-server", "p-rs2")
	lab.Addr(client, "eth0", "10.10.0.50/24")
	lab.Addr(dir1, "eth0", "10.10.0.2/24")
	lab.Addr(dir1, "eth1", "10.20.0.2/24")
	lab.MustRun(dir1, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, rs := range []string{rs1, rs2} {
		lab.Addr(rs, "eth0", fmt.Sprintf("10.20.0.%d/24", 11+i))
		lab.MustRun(rs, "ip", "route", "add", "default", "via", "10.20.0.1") // the gateway VIP
		lab.Serve(rs, fmt.Sprintf("10.20.0.%d:80", 11+i), fmt.Sprintf("rs%d", i+1))
	}

	step("starting `raftlb agent -dev -dataplane auto` on dir1")
	logPath := filepath.Join(work, "dir1.log")
	logf, err := os.Create(logPath)
	if err != nil {
		p.Fatal(err)
	}
	agent := exec.Command("ip", "netns", "exec", dir1, bin, "agent", "-dev", "-dataplane", "auto", "-resync", "5s")
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		p.Fatal(err)
	}
	p.Cleanup(func() { _ = agent.Process.Kill(); _, _ = agent.Process.Wait(); logf.Close() })
	dirAPI := netlab.HTTPClient(dir1, 2*time.Second)
	waitFor(p, "the director's API", 15*time.Second, func() bool {
		resp, err := dirAPI.Get("http://127.0.0.1:7480/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	backend := status(p, dirAPI)["dataplane"].(map[string]any)["backend"]
	fmt.Printf("   dataplane: %v (IPVS where the kernel has it, nftables otherwise)\n", backend)

	cli := func(args ...string) {
		fmt.Printf("   $ raftlb %s\n", strings.Join(args, " "))
		out, err := exec.Command("ip", append([]string{"netns", "exec", dir1, bin}, args...)...).CombinedOutput()
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			fmt.Println("     " + l)
		}
		if err != nil {
			fmt.Printf("   agent log: %s\n", tail(logPath))
			p.Fatalf("raftlb %s: %v", strings.Join(args, " "), err)
		}
	}
	step("configuring it through the CLI")
	cli("vip", "add", "10.10.0.100/24", "-interface", "eth0", "-group", "demo")
	cli("vip", "add", "10.20.0.1/24", "-interface", "eth1", "-group", "demo")
	cli("service", "add", "web", "-t", "10.10.0.100:80", "-s", "rr")
	cli("real", "add", "web", "10.20.0.11:80")
	cli("real", "add", "web", "10.20.0.12:80")
	cli("service", "list")
	waitFor(p, "the VIP on dir1 and the service in the kernel", 15*time.Second, func() bool {
		out, _ := lab.Run(dir1, "ip", "-o", "addr", "show", "dev", "eth0")
		dp, _ := status(p, dirAPI)["dataplane"].(map[string]any)
		return strings.Contains(out, "10.10.0.100/") && dp["destinations"] == float64(2)
	})

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
		dp, _ := status(p, dirAPI)["dataplane"].(map[string]any)
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

// status reads the director's /v1/status.
func status(p *program, c *http.Client) map[string]any {
	resp, err := c.Get("http://127.0.0.1:7480/v1/status")
	if err != nil {
		p.Fatalf("status: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		p.Fatalf("status: %v", err)
	}
	return m
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
