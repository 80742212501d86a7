// Package integration runs the real raftlb binary as separate processes, the
// way an operator runs it from the README.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/internal/testaddr"
	"github.com/raftlb/raftlb/internal/testpki"
	"github.com/raftlb/raftlb/model"
)

var binary string // built once in TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftlb-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftlb")
	build := exec.Command("go", "build", "-o", binary, "../cmd/raftlb")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building raftlb:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const token = "integration-token-2a8e5c1f9d7b3046e2c8a5f1"

// proc is one `raftlb agent` process.
type proc struct {
	id, raft, api, dataDir, logFile string
	args                            []string
	cmd                             *exec.Cmd
	exited                          chan error
}

type lab struct {
	t      *testing.T
	procs  []*proc
	token  string // path of the token file
	scheme string // of the APIs
	caFile string // CA of the HTTPS APIs, if any
	http   *http.Client
}

// newLab prepares n directors bootstrapped with -peers; tls adds mutual
// TLS between directors and HTTPS APIs, with certificates from a fresh CA.
func newLab(t *testing.T, n int, withTLS bool) *lab {
	l := &lab{t: t, token: filepath.Join(t.TempDir(), "token"), scheme: "http", http: &http.Client{Timeout: 5 * time.Second}}
	if err := os.WriteFile(l.token, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var peers []string
	for i := range n {
		p := &proc{id: fmt.Sprintf("d%d", i+1), raft: testaddr.Loopback(t), api: testaddr.Loopback(t), dataDir: t.TempDir()}
		p.logFile = filepath.Join(t.TempDir(), p.id+".log")
		peers = append(peers, p.id+"="+p.raft)
		l.procs = append(l.procs, p)
	}
	var ca *testpki.CA
	if withTLS {
		ca = testpki.NewCA(t, "raftlb-test-ca")
		l.scheme = "https"
	}
	for _, p := range l.procs {
		p.args = []string{"agent", "-node-id", p.id, "-data-dir", p.dataDir, "-raft-addr", p.raft, "-api-addr", p.api,
			"-token-file", l.token, "-peers", strings.Join(peers, ","), "-timing", "fast",
			"-dataplane", "none"} // all directors share this namespace
		if withTLS {
			cert, key, caFile := ca.Issue(t, t.TempDir(), p.id)
			p.args = append(p.args, "-raft-tls-cert", cert, "-raft-tls-key", key, "-raft-tls-ca", caFile,
				"-api-tls-cert", cert, "-api-tls-key", key, "-api-tls-ca", caFile)
			l.caFile = caFile
		}
	}
	if withTLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		l.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	t.Cleanup(func() {
		for _, p := range l.procs {
			l.signal(p, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, p := range l.procs {
				b, _ := os.ReadFile(p.logFile)
				t.Logf("---- %s log (tail) ----\n%s", p.id, tail(string(b), 3000))
			}
		}
	})
	return l
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (l *lab) start(p *proc) {
	l.t.Helper()
	f, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait(); f.Close() }(p.cmd, p.exited)
}

// signal sends sig to a process this test started, by PID, and waits for
// SIGKILL to take effect.
func (l *lab) signal(p *proc, sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-p.exited
		p.cmd = nil
	}
}

func (l *lab) client(p *proc) *client.Client {
	c, err := client.New(client.Options{Addr: l.scheme + "://" + p.api, Token: token, CAFile: l.caFile})
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

// waitReady polls /readyz until the director knows a leader and has caught up.
func (l *lab) waitReady(p *proc) {
	l.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := l.http.Get(l.scheme + "://" + p.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("%s never became ready", p.id)
}

func (l *lab) leader() *proc {
	l.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range l.procs {
			if p.cmd == nil {
				continue
			}
			if st, err := l.client(p).Status(context.Background()); err == nil && st.Role == "leader" {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatal("no leader")
	return nil
}

// cli runs the raftlb CLI against p and returns its stdout.
func (l *lab) cli(p *proc, args ...string) string {
	l.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "RAFTLB_ADDR="+l.scheme+"://"+p.api, "RAFTLB_TOKEN="+token, "RAFTLB_CACERT="+l.caFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		l.t.Fatalf("raftlb %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// services reads p's local (non-consistent) view.
func (l *lab) services(p *proc) []model.Service {
	s, _, err := l.client(p).Services(context.Background(), client.ReadOpts{})
	if err != nil {
		l.t.Fatalf("%s: %v", p.id, err)
	}
	return s
}

// waitSame waits until every running director's local state equals want.
func (l *lab) waitSame(want []model.Service) {
	l.t.Helper()
	for _, p := range l.procs {
		if p.cmd == nil {
			continue
		}
		deadline := time.Now().Add(15 * time.Second)
		for !reflect.DeepEqual(l.services(p), want) {
			if time.Now().After(deadline) {
				l.t.Fatalf("%s: state differs from the leader's:\n%+v\nwant %+v", p.id, l.services(p), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestProcessClusterSurvivesKillAndRestart(t *testing.T) {
	l := newLab(t, 3, false)
	for _, p := range l.procs {
		l.start(p)
	}
	for _, p := range l.procs {
		l.waitReady(p)
	}
	// As a user would: the CLI against a follower.
	var f *proc
	ld := l.leader()
	for _, p := range l.procs {
		if p != ld {
			f = p
			break
		}
	}
	l.cli(f, "service", "add", "web", "-t", "192.0.2.10:80", "-s", "wrr")
	l.cli(f, "real", "add", "web", "10.0.1.1:80", "-w", "3")
	l.cli(f, "real", "add", "web", "10.0.1.2:80", "-w", "1")
	if out := l.cli(f, "service", "list"); !strings.Contains(out, "192.0.2.10:80") || !strings.Contains(out, "10.0.1.2:80") {
		t.Fatalf("service list:\n%s", out)
	}

	// Kill each director in turn with SIGKILL, write while it is down,
	// restart it from its data dir: it ends with every write.
	for i, victim := range l.procs {
		l.signal(victim, syscall.SIGKILL)
		var other *proc
		for _, p := range l.procs {
			if p.cmd != nil {
				other = p
				break
			}
		}
		spec := model.NewServiceSpec()
		spec.Name, spec.Protocol, spec.Address, spec.Port = fmt.Sprintf("down-%d", i), "tcp", "192.0.2.20", 1000+i
		// As an operator would: a write that hit the dying leader reports
		// leadership_lost (it may or may not have been applied): retry,
		// and "already exists" means the first attempt made it.
		for attempt := 0; ; attempt++ {
			_, err := l.client(other).CreateService(context.Background(), client.ServiceCreate{ServiceSpec: spec})
			if err == nil || (attempt > 0 && client.IsCode(err, model.CodeConflict)) {
				break
			}
			if !client.IsCode(err, wire.CodeLeadershipLost) || attempt == 5 {
				t.Fatalf("write while %s is down: %v", victim.id, err)
			}
		}
		l.start(victim)
		l.waitReady(victim)
		l.waitSame(l.services(l.leader()))
	}
	if got := len(l.services(l.procs[0])); got != 4 {
		t.Fatalf("%d services, want 4", got)
	}

	// SIGTERM on the leader hands leadership over and exits 0.
	ld = l.leader()
	l.signal(ld, syscall.SIGTERM)
	select {
	case err := <-ld.exited:
		if err != nil {
			t.Fatalf("leader exited with %v after SIGTERM", err)
		}
		ld.cmd = nil
	case <-time.After(15 * time.Second):
		t.Fatal("leader did not exit after SIGTERM")
	}
	if nl := l.leader(); nl == ld {
		t.Fatal("no new leader after SIGTERM")
	}
}

// TestProcessClusterTLS: raft between directors over mutual TLS, APIs over
// HTTPS; the CLI writes through a follower, which forwards to the leader
// over HTTPS, verifying it with -api-tls-ca.
func TestProcessClusterTLS(t *testing.T) {
	l := newLab(t, 3, true)
	for _, p := range l.procs {
		l.start(p)
	}
	for _, p := range l.procs {
		l.waitReady(p)
	}
	ld := l.leader()
	var followers []*proc
	for _, p := range l.procs {
		if p != ld {
			followers = append(followers, p)
		}
	}
	l.cli(followers[0], "service", "add", "web", "-t", "192.0.2.10:443", "-s", "rr")
	l.cli(followers[0], "real", "add", "web", "10.0.1.1:443")
	l.waitSame(l.services(ld))
	if out := l.cli(followers[1], "service", "list"); !strings.Contains(out, "10.0.1.1:443") {
		t.Fatalf("service list through the other follower:\n%s", out)
	}
	// Plain HTTP to an HTTPS API is refused.
	if resp, err := http.Get("http://" + ld.api + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered by an HTTPS API")
		}
	}
}
