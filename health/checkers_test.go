package health

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/internal/testpki"
	"github.com/raftlb/raftlb/model"
)

// check normalises s, builds its checker and runs one attempt against addr.
func check(t *testing.T, addr string, s model.Check) Result {
	t.Helper()
	s, err := model.NormalizeCheck(s)
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	c, err := NewChecker(s)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout.D())
	defer cancel()
	return c.Check(ctx, Target{Addr: netip.MustParseAddrPort(addr), Spec: s})
}

func wantUp(t *testing.T, r Result, up bool, errContains string) {
	t.Helper()
	if r.Up != up || !strings.Contains(r.Err, errContains) {
		t.Fatalf("result %+v, want up=%v with error containing %q", r, up, errContains)
	}
}

// closedPort returns a loopback address with nothing listening.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := c.LocalAddr().String()
		c.Close()
		return a
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestTCPChecker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	r := check(t, ln.Addr().String(), model.Check{Type: "tcp"})
	wantUp(t, r, true, "")
	if r.Latency <= 0 {
		t.Errorf("latency %v", r.Latency)
	}
	wantUp(t, check(t, closedPort(t, "tcp"), model.Check{Type: "tcp"}), false, "connection refused")

	// Spec.Port overrides the target's port.
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	wantUp(t, check(t, closedPort(t, "tcp"), model.Check{Type: "tcp", Port: p}), true, "")
}

// TestTimeoutsInNamespace checks against a namespace address that no one
// answers (ARP goes unanswered on a veth whose peer has no such address):
// TCP times out, ICMP gets no reply; a real neighbour answers ICMP.
func TestTimeoutsInNamespace(t *testing.T) {
	lab := netlab.New(t)
	ns, peer := lab.Netns("hc"), lab.Netns("hcpeer")
	lab.Link(ns, "eth0", peer, "eth0")
	lab.Addr(ns, "eth0", "10.250.0.1/24")
	lab.Addr(peer, "eth0", "10.250.0.3/24")
	in := func(addr string, s model.Check) (r Result) {
		t.Helper()
		if err := netlab.Do(ns, func() error { r = check(t, addr, s); return nil }); err != nil {
			t.Fatal(err)
		}
		return r
	}
	start := time.Now()
	wantUp(t, in("10.250.0.2:80", model.Check{Type: "tcp", Timeout: model.Duration(100 * time.Millisecond)}), false, "timeout")
	if d := time.Since(start); d > time.Second {
		t.Errorf("check took %v with a 100ms timeout", d)
	}
	wantUp(t, in("10.250.0.2:0", model.Check{Type: "icmp", Timeout: model.Duration(100 * time.Millisecond)}), false, "timeout")
	wantUp(t, in("10.250.0.3:0", model.Check{Type: "icmp"}), true, "")
	wantUp(t, in("10.250.0.3:80", model.Check{Type: "tcp"}), false, "refused")
}

type seen struct {
	mu         sync.Mutex
	host, sni  string
	path, ua   string
	requests   int
	statusCode int
	body       string
}

func (s *seen) handler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.host, s.path, s.ua = r.Host, r.URL.Path, r.UserAgent()
	if r.TLS != nil {
		s.sni = r.TLS.ServerName
	}
	w.WriteHeader(s.statusCode)
	fmt.Fprint(w, s.body)
}

func (s *seen) set(code int, body string) {
	s.mu.Lock()
	s.statusCode, s.body = code, body
	s.mu.Unlock()
}

func (s *seen) get() (host, sni, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host, s.sni, s.path
}

func TestHTTPChecker(t *testing.T) {
	sv := &seen{statusCode: 200, body: "hello healthy world"}
	srv := httptest.NewServer(http.HandlerFunc(sv.handler))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	h := func(hs model.HTTPCheck) model.Check { return model.Check{Type: "http", HTTP: &hs} }

	wantUp(t, check(t, addr, h(model.HTTPCheck{Path: "/health", Host: "www.example.com"})), true, "")
	if host, _, path := sv.get(); host != "www.example.com" || path != "/health" {
		t.Errorf("server saw Host %q path %q", host, path)
	}
	wantUp(t, check(t, addr, h(model.HTTPCheck{})), true, "")
	if host, _, _ := sv.get(); host != addr {
		t.Errorf("default Host %q, want %q", host, addr)
	}

	// Status ranges.
	sv.set(301, "moved")
	wantUp(t, check(t, addr, h(model.HTTPCheck{})), false, "status 301, want 200-299")
	wantUp(t, check(t, addr, h(model.HTTPCheck{Status: "200-299,301"})), true, "")
	sv.set(503, "down")
	wantUp(t, check(t, addr, h(model.HTTPCheck{Status: "200-299,301"})), false, "status 503")
	wantUp(t, check(t, addr, h(model.HTTPCheck{Status: "500-599"})), true, "")

	// Body regex and digest.
	sv.set(200, "hello healthy world")
	sum := sha256.Sum256([]byte("hello healthy world"))
	digest := hex.EncodeToString(sum[:])
	wantUp(t, check(t, addr, h(model.HTTPCheck{BodyRegex: `heal+thy`})), true, "")
	wantUp(t, check(t, addr, h(model.HTTPCheck{BodyRegex: `^sick`})), false, "does not match")
	wantUp(t, check(t, addr, h(model.HTTPCheck{BodySHA256: strings.ToUpper(digest)})), true, "")
	wantUp(t, check(t, addr, h(model.HTTPCheck{BodySHA256: digest, BodyRegex: "world$"})), true, "")
	sv.set(200, "hello healthy world!")
	wantUp(t, check(t, addr, h(model.HTTPCheck{BodySHA256: digest})), false, "body sha256")

	// Refused and slow servers.
	wantUp(t, check(t, closedPort(t, "tcp"), h(model.HTTPCheck{})), false, "refused")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer slow.Close()
	wantUp(t, check(t, slow.Listener.Addr().String(), model.Check{Type: "http", Timeout: model.Duration(100 * time.Millisecond)}), false, "timeout")
}

func TestHTTPSChecker(t *testing.T) {
	ca := testpki.NewCA(t, "health-test-ca")
	certFile, keyFile, caFile := ca.Issue(t, t.TempDir(), "server") // SANs 127.0.0.1, localhost
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sv := &seen{statusCode: 200, body: "ok"}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(sv.handler))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	h := func(hs model.HTTPCheck) model.Check { return model.Check{Type: "https", HTTP: &hs} }

	// Verify off: any certificate will do.
	wantUp(t, check(t, addr, h(model.HTTPCheck{})), true, "")
	// Verify on against the system roots: the test CA is unknown.
	wantUp(t, check(t, addr, h(model.HTTPCheck{TLSVerify: true})), false, "certificate")
	// Verify on with the CA: the IP SAN matches.
	wantUp(t, check(t, addr, h(model.HTTPCheck{TLSVerify: true, CAFile: caFile})), true, "")
	// SNI is sent and verified.
	wantUp(t, check(t, addr, h(model.HTTPCheck{TLSVerify: true, CAFile: caFile, SNI: "localhost"})), true, "")
	if _, sni, _ := sv.get(); sni != "localhost" {
		t.Errorf("server saw SNI %q, want localhost", sni)
	}
	wantUp(t, check(t, addr, h(model.HTTPCheck{TLSVerify: true, CAFile: caFile, SNI: "other.example"})), false, "certificate")
	wantUp(t, check(t, addr, h(model.HTTPCheck{SNI: "other.example", Host: "vhost.example"})), true, "")
	if host, sni, _ := sv.get(); sni != "other.example" || host != "vhost.example" {
		t.Errorf("server saw Host %q SNI %q", host, sni)
	}
	// Without SNI the Host header's name is the server name.
	wantUp(t, check(t, addr, h(model.HTTPCheck{Host: "localhost:443", TLSVerify: true, CAFile: caFile})), true, "")
	if _, sni, _ := sv.get(); sni != "localhost" {
		t.Errorf("server saw SNI %q, want localhost (from Host)", sni)
	}

	// A missing CA file: the checker cannot be built.
	s, _ := model.NormalizeCheck(h(model.HTTPCheck{TLSVerify: true, CAFile: filepath.Join(t.TempDir(), "none.pem")}))
	if _, err := NewChecker(s); err == nil {
		t.Error("NewChecker with a missing CA file succeeded")
	}
}

// udpEcho answers every datagram with prefix+datagram.
func udpEcho(t *testing.T, prefix string) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().String()
}

func TestUDPChecker(t *testing.T) {
	addr := udpEcho(t, "PONG ")
	u := func(us model.UDPCheck) model.Check {
		return model.Check{Type: "udp", Timeout: model.Duration(200 * time.Millisecond), UDP: &us}
	}
	wantUp(t, check(t, addr, u(model.UDPCheck{Payload: "ping", Expect: "PONG ping"})), true, "")
	wantUp(t, check(t, addr, u(model.UDPCheck{PayloadHex: "00ff", ExpectHex: hex.EncodeToString([]byte("PONG \x00\xff"))})), true, "")
	wantUp(t, check(t, addr, u(model.UDPCheck{Payload: "ping", Expect: "PONG pong"})), false, "does not start with")
	wantUp(t, check(t, addr, u(model.UDPCheck{Payload: "x", RequireReply: true})), true, "")

	// Nothing listening: the ICMP port unreachable is seen.
	closed := closedPort(t, "udp")
	wantUp(t, check(t, closed, u(model.UDPCheck{Payload: "ping"})), false, "port unreachable")
	wantUp(t, check(t, closed, u(model.UDPCheck{Payload: "ping", Expect: "x"})), false, "port unreachable")

	// A silent server: up without an expected reply (no ICMP error), down
	// when a reply is required.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	wantUp(t, check(t, silent.LocalAddr().String(), u(model.UDPCheck{Payload: "ping"})), true, "")
	wantUp(t, check(t, silent.LocalAddr().String(), u(model.UDPCheck{Payload: "ping", RequireReply: true})), false, "timeout")
}

func TestDNSChecker(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lastQ dns.Question
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		mu.Lock()
		lastQ = q
		mu.Unlock()
		switch {
		case q.Name == "up.example." && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR("up.example. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case q.Name == "up.example.":
			// NOERROR, no data
		case q.Name == "broken.example.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	defer srv.Shutdown()
	addr := pc.LocalAddr().String()
	d := func(ds model.DNSCheck) model.Check {
		return model.Check{Type: "dns", Timeout: model.Duration(300 * time.Millisecond), DNS: &ds}
	}

	wantUp(t, check(t, addr, d(model.DNSCheck{Name: "UP.example"})), true, "")
	mu.Lock()
	if lastQ.Name != "up.example." || lastQ.Qtype != dns.TypeA {
		t.Errorf("server saw %v, want up.example. A", lastQ)
	}
	mu.Unlock()
	wantUp(t, check(t, addr, d(model.DNSCheck{Name: "up.example", QType: "aaaa"})), true, "")
	mu.Lock()
	if lastQ.Qtype != dns.TypeAAAA {
		t.Errorf("server saw type %d, want AAAA", lastQ.Qtype)
	}
	mu.Unlock()
	wantUp(t, check(t, addr, d(model.DNSCheck{Name: "missing.example"})), false, "rcode NXDOMAIN, want NOERROR")
	wantUp(t, check(t, addr, d(model.DNSCheck{Name: "missing.example", Rcode: "nxdomain"})), true, "")
	wantUp(t, check(t, addr, d(model.DNSCheck{Name: "broken.example"})), false, "SERVFAIL")
	wantUp(t, check(t, closedPort(t, "udp"), d(model.DNSCheck{Name: "up.example"})), false, "dns")
}

func TestICMPChecker(t *testing.T) {
	wantUp(t, check(t, "127.0.0.1:0", model.Check{Type: "icmp"}), true, "")
	if _, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		wantUp(t, check(t, "[::1]:0", model.Check{Type: "icmp"}), true, "")
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScriptChecker(t *testing.T) {
	sc := func(path string, dynamic bool, args ...string) model.Check {
		return model.Check{Type: "script", Timeout: model.Duration(2 * time.Second), Script: &model.ScriptCheck{Path: path, Args: args, Dynamic: dynamic}}
	}
	exit := writeScript(t, `[ "$RAFTLB_CHECK_ADDRESS" = 127.0.0.1 ] && [ "$RAFTLB_CHECK_PORT" = 8080 ] || { echo "bad env $RAFTLB_CHECK_ADDRESS $RAFTLB_CHECK_PORT"; exit 1; }
echo "status $1" >&2
exit "$1"`)
	wantUp(t, check(t, "127.0.0.1:8080", sc(exit, false, "0")), true, "")
	wantUp(t, check(t, "127.0.0.1:8080", sc(exit, false, "1")), false, "script exit 1: status 1")
	wantUp(t, check(t, "127.0.0.1:9", sc(exit, false, "0")), false, "bad env 127.0.0.1 9")
	// 2-255: down, or up with weight exit-2 with dynamic.
	wantUp(t, check(t, "127.0.0.1:8080", sc(exit, false, "7")), false, "script exit 7")
	r := check(t, "127.0.0.1:8080", sc(exit, true, "7"))
	wantUp(t, r, true, "")
	if r.Weight == nil || *r.Weight != 5 {
		t.Errorf("dynamic weight %v, want 5", r.Weight)
	}
	r = check(t, "127.0.0.1:8080", sc(exit, true, "0"))
	if !r.Up || r.Weight != nil {
		t.Errorf("exit 0 with dynamic: %+v, want up without weight", r)
	}
	wantUp(t, check(t, "127.0.0.1:8080", sc(exit, true, "1")), false, "exit 1")
	r = check(t, "127.0.0.1:8080", sc(exit, true, "255"))
	if !r.Up || r.Weight == nil || *r.Weight != 253 {
		t.Errorf("exit 255 with dynamic: %+v, want weight 253", r)
	}
	wantUp(t, check(t, "127.0.0.1:8080", sc("/nonexistent/check", false)), false, "script")
}

func TestScriptTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The script starts a child that would outlive it, then hangs.
	p := writeScript(t, `sleep 30 & echo $! > `+pidFile+`
wait`)
	start := time.Now()
	r := check(t, "127.0.0.1:1", model.Check{Type: "script", Timeout: model.Duration(5 * time.Second),
		Script: &model.ScriptCheck{Path: p, Timeout: model.Duration(300 * time.Millisecond)}})
	wantUp(t, r, false, "timed out")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("check took %v with a 300ms script timeout", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The grandchild (sleep 30) was killed with the group; it is reaped by
	// init, so wait until it is gone or a zombie.
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out script still runs: %s", pid, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDNSNamesKnownToTheChecker: every query type and rcode the model
// accepts (model/dnsnames.go, kept free of DNS code) is one the checker's
// DNS library can send and compare.
func TestDNSNamesKnownToTheChecker(t *testing.T) {
	for _, ty := range model.DNSTypes {
		if _, ok := dns.StringToType[ty]; !ok {
			t.Errorf("DNS type %s is not known to miekg/dns", ty)
		}
	}
	for _, rc := range model.DNSRcodes {
		if _, ok := dns.StringToRcode[rc]; !ok {
			t.Errorf("rcode %s is not known to miekg/dns", rc)
		}
	}
	for _, name := range []string{"example.org.", "a.b.", "xn--bcher-kva.example."} {
		if _, ok := dns.IsDomainName(name); !ok {
			t.Errorf("%s: not a domain name to miekg/dns", name)
		}
	}
}
