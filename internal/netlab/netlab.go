// Package netlab builds throwaway network labs for tests: network
// namespaces joined by veth pairs and bridges, with Go code run inside a
// namespace (a socket created there stays there, so servers and clients need
// no extra binaries). Everything a Lab creates is removed by Close, which
// New registers with t.Cleanup, so a failing test cleans up too.
//
// Namespace names carry the creating process's PID ("rlbt<pid>-<name>"), so
// parallel test binaries never collide and New sweeps the leftovers of dead
// test processes. Needs root and iproute2; New skips the test otherwise.
package netlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

const prefix = "rlbt"

var vethSeq atomic.Int64

// T is what a Lab needs of its user; *testing.T and *testing.B have it,
// and a program (the demo) can provide it too.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
	Cleanup(func())
}

// Lab is one test's set of namespaces and processes.
type Lab struct {
	t      T
	mu     sync.Mutex
	spaces []string
	procs  []*exec.Cmd
	closed bool
}

// New returns an empty lab, or skips t when not root or iproute2 is
// missing.
func New(t T) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab: needs iproute2 (ip)")
	}
	sweep()
	l := &Lab{t: t}
	t.Cleanup(l.Close)
	return l
}

// sweep deletes namespaces left by test processes that no longer exist.
func sweep() {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its process is alive
		}
		killPIDsIn(e.Name())
		_ = exec.Command("ip", "netns", "del", e.Name()).Run()
	}
}

// killPIDsIn ends every process inside namespace ns: only namespaces this
// package made, so only processes of our tests.
func killPIDsIn(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Name returns the full namespace name of short name n.
func Name(n string) string { return fmt.Sprintf("%s%d-%s", prefix, os.Getpid(), n) }

// Netns creates namespace n with loopback up and returns its full name.
func (l *Lab) Netns(n string) string {
	l.t.Helper()
	full := Name(n)
	l.mustIP("netns", "add", full)
	l.mu.Lock()
	l.spaces = append(l.spaces, full)
	l.mu.Unlock()
	l.MustRun(full, "ip", "link", "set", "lo", "up")
	return full
}

func (l *Lab) mustIP(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Run runs a command inside namespace ns and returns its combined output.
func (l *Lab) Run(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// MustRun is Run that fails the test on error.
func (l *Lab) MustRun(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.Run(ns, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// Bridge creates bridge br inside ns (stp off, no forward delay) and brings
// it up.
func (l *Lab) Bridge(ns, br string) {
	l.t.Helper()
	l.MustRun(ns, "ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	l.MustRun(ns, "ip", "link", "set", br, "up")
}

// Link connects ifA in nsA and ifB in nsB with a veth pair, both up. mac,
// if given, is set on ifA.
func (l *Lab) Link(nsA, ifA, nsB, ifB string, mac ...string) {
	l.t.Helper()
	// Temporary names in the root namespace, unique across test processes.
	n := vethSeq.Add(1)
	tmpA, tmpB := fmt.Sprintf("rl%d_%da", os.Getpid(), n), fmt.Sprintf("rl%d_%db", os.Getpid(), n)
	l.mustIP("link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	l.mustIP("link", "set", tmpA, "netns", nsA)
	l.mustIP("link", "set", tmpB, "netns", nsB)
	l.MustRun(nsA, "ip", "link", "set", tmpA, "name", ifA)
	l.MustRun(nsB, "ip", "link", "set", tmpB, "name", ifB)
	if len(mac) > 0 && mac[0] != "" {
		l.MustRun(nsA, "ip", "link", "set", ifA, "address", mac[0])
	}
	l.MustRun(nsA, "ip", "link", "set", ifA, "up")
	l.MustRun(nsB, "ip", "link", "set", ifB, "up")
}

// Attach connects interface ifA in nsA to bridge br in nsBr (the bridge
// side port is named port).
func (l *Lab) Attach(nsA, ifA, nsBr, br, port string, mac ...string) {
	l.t.Helper()
	l.Link(nsA, ifA, nsBr, port, mac...)
	l.MustRun(nsBr, "ip", "link", "set", port, "master", br)
}

// Addr adds address cidr to ifname in ns.
func (l *Lab) Addr(ns, ifname, cidr string) {
	l.t.Helper()
	l.MustRun(ns, "ip", "addr", "add", cidr, "dev", ifname, "nodad")
}

// Start runs a long-lived command inside ns; Close ends it by PID.
func (l *Lab) Start(ns string, args ...string) *exec.Cmd {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %v in %s: %v", args, ns, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return cmd
}

// Do runs fn on an OS thread switched into namespace ns ("" = the current
// one). Sockets fn creates belong to ns for their whole life.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if restoring fails, so Go discards
		// it rather than reusing it in the wrong namespace.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// Serve runs an HTTP server inside ns at addr that answers every request
// with body; it stops when the test ends.
func (l *Lab) Serve(ns, addr, body string) {
	l.t.Helper()
	ln, err := Listen(ns, "tcp", addr)
	if err != nil {
		l.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	l.t.Cleanup(func() { srv.Close() })
}

// HTTPClient returns a client whose connections are made inside ns, one
// new TCP connection per request (so a scheduler sees every request).
func HTTPClient(ns string, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := Do(ns, func() (err error) {
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Close ends the lab's processes and deletes its namespaces. Idempotent.
func (l *Lab) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for _, p := range l.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
	}
	for i := len(l.spaces) - 1; i >= 0; i-- {
		killPIDsIn(l.spaces[i])
		if out, err := exec.Command("ip", "netns", "del", l.spaces[i]).CombinedOutput(); err != nil {
			l.t.Logf("netlab: delete %s: %v: %s", l.spaces[i], err, out)
		}
	}
}
