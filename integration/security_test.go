package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/model"
	"golang.org/x/sys/unix"
)

// The security tests run the real binary with the documented defaults —
// a token file and nothing else — on addresses beyond loopback (a bridge
// between network namespaces), and attack it from a host that has no token.

// secLab is three directors d1-d3 (10.30.0.2-4) and a client/attacker
// namespace (10.30.0.50) on one bridge.
type secLab struct {
	t         *testing.T
	lab       *netlab.Lab
	sw, cl    string
	dirs, ips []string
	tokenFile string
	extra     []string // more agent flags (-insecure)
	procs     []*exec.Cmd
	logs      []string
	peers     string
}

// newSecLabMode is a secLab with the defaults ("default") or -insecure.
func newSecLabMode(t *testing.T, mode string) *secLab {
	if mode == "insecure" {
		return newSecLab(t, "-insecure")
	}
	return newSecLab(t)
}

func newSecLab(t *testing.T, extra ...string) *secLab {
	l := &secLab{t: t, lab: netlab.New(t), extra: extra, tokenFile: filepath.Join(t.TempDir(), "token")}
	if err := os.WriteFile(l.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.sw = l.lab.Netns("sw")
	l.lab.Bridge(l.sw, "br0")
	l.cl = l.lab.Netns("client")
	l.lab.Attach(l.cl, "eth0", l.sw, "br0", "p-cl")
	l.lab.Addr(l.cl, "eth0", "10.30.0.50/24")
	var peers []string
	for i := range 4 { // d4 joins later
		ns := l.lab.Netns(fmt.Sprintf("d%d", i+1))
		ip := fmt.Sprintf("10.30.0.%d", i+2)
		l.lab.Attach(ns, "eth0", l.sw, "br0", fmt.Sprintf("p-d%d", i+1))
		l.lab.Addr(ns, "eth0", ip+"/24")
		l.dirs, l.ips = append(l.dirs, ns), append(l.ips, ip)
		if i < 3 {
			peers = append(peers, fmt.Sprintf("d%d=%s:7481", i+1, ip))
		}
	}
	l.peers = strings.Join(peers, ",")
	stopOnCleanup(t, &l.procs, &l.logs)
	return l
}

// start runs director i (0-based) with the defaults plus l.extra and more.
func (l *secLab) start(i int, more ...string) {
	l.t.Helper()
	logPath := filepath.Join(l.t.TempDir(), fmt.Sprintf("d%d.log", i+1))
	f, err := os.Create(logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	args := append([]string{"netns", "exec", l.dirs[i], binary, "agent", "-node-id", fmt.Sprintf("d%d", i+1),
		"-data-dir", l.t.TempDir(), "-raft-addr", l.ips[i] + ":7481", "-api-addr", l.ips[i] + ":7480",
		"-token-file", l.tokenFile, "-timing", "fast", "-dataplane", "none"}, l.extra...)
	cmd := exec.Command("ip", append(args, more...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.procs, l.logs = append(l.procs, cmd), append(l.logs, logPath)
}

func (l *secLab) insecure() bool { return len(l.extra) > 0 }

// api is a client of director i from the client namespace: host:port,
// so HTTPS verified with the cluster CA (or http with -insecure).
func (l *secLab) api(i int) *client.Client {
	addr := l.ips[i] + ":7480"
	if l.insecure() {
		addr = "http://" + addr
	}
	c, err := client.New(client.Options{Addr: addr, Token: token, Insecure: l.insecure(),
		Transport: netlab.HTTPClient(l.cl, 5*time.Second).Transport, Timeout: 5 * time.Second})
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func (l *secLab) cli(i int, args ...string) string {
	l.t.Helper()
	addr := l.ips[i] + ":7480"
	env := []string{"RAFTLB_TOKEN=" + token}
	if l.insecure() {
		addr, env = "http://"+addr, append(env, "RAFTLB_INSECURE=1")
	}
	full := append([]string{"netns", "exec", l.cl, "env", "RAFTLB_ADDR=" + addr}, env...)
	out, err := exec.Command("ip", append(append(full, binary), args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("raftlb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *secLab) startCluster() {
	for i := range 3 {
		l.start(i, "-peers", l.peers)
	}
	l.waitFor("a leader on every director", func() bool {
		for i := range 3 {
			if st, err := l.api(i).Status(context.Background()); err != nil || st.LeaderID == "" {
				return false
			}
		}
		return true
	})
}

func (l *secLab) waitFor(what string, cond func() bool) {
	l.t.Helper()
	waitUntil(l.t, what, 30*time.Second, cond)
}

// forge sends one AppendEntries to director i's raft port from the
// attacker's namespace with hashicorp/raft's own TCP transport, as a
// would-be leader of a newer term that appends a service and commits it.
// answered says whether raft on the far side processed it (and so adopted
// the forged term, deposing the real leader); err is the transport's error
// or raft's refusal.
func (l *secLab) forge(i int, st wire.Status) (answered bool, err error) {
	cmd, err := fsm.Encode(&fsm.CreateService{Service: model.ServiceSpec{Name: "forged", Protocol: "tcp", Address: "198.51.100.66", Port: 80,
		Scheduler: "rr", Forward: "nat"}})
	if err != nil {
		return false, err
	}
	term := st.Term + 1
	req := &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("mallory"), Addr: []byte("10.30.0.50:7481")},
		Term:              term,
		PrevLogEntry:      st.CommitIndex,
		PrevLogTerm:       st.Term,
		Entries:           []*raft.Log{{Index: st.CommitIndex + 1, Term: term, Type: raft.LogCommand, Data: cmd}},
		LeaderCommitIndex: st.CommitIndex + 1,
	}
	var resp raft.AppendEntriesResponse
	err = netlab.Do(l.cl, func() error {
		tr, err := raft.NewTCPTransportWithLogger("10.30.0.50:0", nil, 1, 3*time.Second, hclog.NewNullLogger())
		if err != nil {
			return err
		}
		defer tr.Close()
		target := raft.ServerAddress(l.ips[i] + ":7481")
		if err := tr.AppendEntries(raft.ServerID(fmt.Sprintf("d%d", i+1)), target, req, &resp); err != nil {
			return err
		}
		answered = true
		if !resp.Success {
			return fmt.Errorf("answered at term %d, entry not appended (log mismatch)", resp.Term)
		}
		return nil
	})
	return answered, err
}

// TestForgedAppendEntriesIsRefused: with the defaults, a host without the
// cluster's certificate cannot speak raft to a director: the forged entry
// is refused, no term moves, no leader is deposed, no service appears. With
// -insecure (the old default) raft processes the same request and adopts
// its term, which shows the attack is real and this test can see it.
func TestForgedAppendEntriesIsRefused(t *testing.T) {
	for _, mode := range []string{"default", "insecure"} {
		t.Run(mode, func(t *testing.T) {
			l := newSecLabMode(t, mode)
			l.startCluster()
			before := make([]wire.Status, 3)
			leader := -1
			for i := range 3 {
				st, err := l.api(i).Status(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				before[i] = st
				if st.Role == "leader" {
					leader = i
				}
				if mode == "default" && (st.Security == nil || st.Security.Insecure || !strings.HasPrefix(st.Security.Raft, "mutual TLS")) {
					t.Fatalf("d%d security %+v", i+1, st.Security)
				}
				if mode == "insecure" && (st.Security == nil || !st.Security.Insecure) {
					t.Fatalf("d%d: -insecure not shown in status: %+v", i+1, st.Security)
				}
			}
			if out := l.cli(leader, "status"); mode == "insecure" != strings.Contains(out, "INSECURE") {
				t.Fatalf("raftlb status under %s:\n%s", mode, out)
			}
			var errs []error
			for i := range 3 {
				if i == leader {
					continue
				}
				answered, err := l.forge(i, before[i])
				errs = append(errs, err)
				if answered != (mode == "insecure") {
					t.Fatalf("%s: d%d's raft answered a forged AppendEntries: %v (err %v)", mode, i+1, answered, err)
				}
			}
			forged := func(i int) bool {
				_, err := l.api(i).Service(context.Background(), "forged", client.ReadOpts{})
				return err == nil
			}
			if mode == "insecure" {
				// Without TLS the forgery reaches raft: the followers adopt
				// the forged term, which deposes the leader, and append the
				// forged entry when their log matched the forged position.
				// The attack is real, and this test sees it.
				for i := range 3 {
					if i == leader {
						continue
					}
					st, err := l.api(i).Status(context.Background())
					if err != nil || st.Term <= before[i].Term {
						t.Fatalf("d%d did not adopt the forged term: %d -> %d (%v)", i+1, before[i].Term, st.Term, err)
					}
				}
				t.Logf("-insecure: forged AppendEntries processed by raft: %v; forged service applied on a follower: %v",
					errs, forged((leader+1)%3) || forged((leader+2)%3))
				return
			}
			for i := range 3 {
				st, err := l.api(i).Status(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if st.Term != before[i].Term || st.LeaderID != before[i].LeaderID || forged(i) {
					t.Fatalf("d%d changed after the forgery: term %d -> %d, leader %s -> %s, forged service %v",
						i+1, before[i].Term, st.Term, before[i].LeaderID, st.LeaderID, forged(i))
				}
			}
			t.Logf("forged AppendEntries refused: %v", errs)
		})
	}
}

// capture records every frame on every port of the lab's switch until
// stop is called, and returns the bytes.
func (l *secLab) capture() (stop func() []byte) {
	l.t.Helper()
	var fd int
	err := netlab.Do(l.sw, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b := make([]byte, 1<<16)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, b, 0)
			if err == nil && n > 0 {
				mu.Lock()
				buf.Write(b[:n])
				mu.Unlock()
			}
		}
	}()
	return func() []byte {
		close(done)
		wg.Wait()
		unix.Close(fd)
		mu.Lock()
		defer mu.Unlock()
		return buf.Bytes()
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestTokenNeverInCleartext: everything that carries the token beyond
// loopback — the CLI's requests, a follower forwarding a write to the
// leader, a director joining through another's API, discovery — is
// captured on the wire, and the token is not in it. With -insecure it is
// (the capture can see it).
func TestTokenNeverInCleartext(t *testing.T) {
	for _, mode := range []string{"default", "insecure"} {
		t.Run(mode, func(t *testing.T) {
			l := newSecLabMode(t, mode)
			stop := l.capture()
			l.startCluster()
			leader := -1
			for i := range 3 {
				if st, _ := l.api(i).Status(context.Background()); st.Role == "leader" {
					leader = i
				}
			}
			follower := (leader + 1) % 3
			l.cli(follower, "service", "add", "web", "-t", "192.0.2.10:80", "-s", "rr") // forwarded to the leader
			l.cli(follower, "real", "add", "web", "10.0.1.1:80")
			l.cli(leader, "service", "list")
			join := l.ips[follower] + ":7480"
			if mode == "insecure" {
				join = "http://" + join
			}
			l.start(3, "-join", join)
			l.waitFor("d4 joined", func() bool {
				st, err := l.api(3).Status(context.Background())
				return err == nil && st.LeaderID != "" && len(st.Peers) == 4
			})
			frames := stop()
			if len(frames) < 10000 {
				t.Fatalf("captured only %d bytes: the capture sees nothing", len(frames))
			}
			found := bytes.Contains(frames, []byte(token))
			if mode == "insecure" && !found {
				t.Fatalf("the token is not in %d captured bytes even without TLS: the capture is blind", len(frames))
			}
			if mode == "default" && found {
				t.Fatalf("the token crossed the wire in cleartext (%d bytes captured)", len(frames))
			}
			t.Logf("%s: %d bytes captured, token in cleartext: %v", mode, len(frames), found)
		})
	}
}
