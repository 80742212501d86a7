package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/raftlb/raftlb/model"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// --- UDP ---

type udpChecker struct {
	payload, expect []byte
	requireReply    bool
}

func newUDPChecker(s model.Check) udpChecker {
	p, e := s.UDP.Bytes()
	return udpChecker{payload: p, expect: e, requireReply: s.UDP.RequireReply || len(e) > 0}
}

func (c udpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	conn, err := (&net.Dialer{}).DialContext(ctx, "udp", t.CheckAddr().String())
	if err != nil {
		return fail(start, "udp: %s", errText(ctx, err))
	}
	defer conn.Close()
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(c.payload); err != nil {
		return fail(start, "udp send: %s", errText(ctx, err))
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if !c.requireReply && errors.As(err, &ne) && ne.Timeout() {
			return ok(start) // no ICMP error: up, as keepalived's UDP_CHECK
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fail(start, "udp: port unreachable")
		}
		return fail(start, "udp: %s", errText(ctx, err))
	}
	if !bytes.HasPrefix(buf[:n], c.expect) {
		return fail(start, "udp reply %q does not start with %q", truncate(buf[:n], 64), c.expect)
	}
	return ok(start)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// --- DNS ---

type dnsChecker struct {
	name  string
	qtype uint16
	rcode int
}

func newDNSChecker(s model.Check) (dnsChecker, error) {
	return dnsChecker{name: s.DNS.Name, qtype: dns.StringToType[s.DNS.QType], rcode: dns.StringToRcode[s.DNS.Rcode]}, nil
}

func (c dnsChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	m := new(dns.Msg)
	m.SetQuestion(c.name, c.qtype)
	cl := &dns.Client{Net: "udp"}
	if dl, has := ctx.Deadline(); has {
		cl.Timeout = time.Until(dl)
	}
	in, _, err := cl.ExchangeContext(ctx, m, t.CheckAddr().String())
	if err != nil {
		return fail(start, "dns: %s", errText(ctx, err))
	}
	if in.Rcode != c.rcode {
		return fail(start, "dns rcode %s, want %s", dns.RcodeToString[in.Rcode], dns.RcodeToString[c.rcode])
	}
	return ok(start)
}

// --- ICMP ---

// icmpChecker sends one echo request. It uses an unprivileged ping socket
// where net.ipv4.ping_group_range allows it (the kernel then matches replies
// to the socket), and a raw socket otherwise (root).
type icmpChecker struct{}

var icmpSeq struct {
	sync.Mutex
	n uint16
}

func (icmpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ip := t.Addr.Addr().Unmap()
	v6 := ip.Is6()
	network, raw, proto := "udp4", "ip4:icmp", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if v6 {
		network, raw, proto = "udp6", "ip6:ipv6-icmp", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	privileged := false
	conn, err := icmp.ListenPacket(network, "")
	if err != nil {
		conn, err = icmp.ListenPacket(raw, "")
		privileged = true
	}
	if err != nil {
		return fail(start, "icmp socket: %v", err)
	}
	defer conn.Close()
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(dl)
	}
	icmpSeq.Lock()
	icmpSeq.n++
	seq := int(icmpSeq.n)
	icmpSeq.Unlock()
	id := rand.IntN(0xffff) // the kernel replaces it on ping sockets
	msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("raftlb-health")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fail(start, "icmp: %v", err)
	}
	var dst net.Addr = &net.UDPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	if privileged {
		dst = &net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
	}
	if _, err := conn.WriteTo(b, dst); err != nil {
		return fail(start, "icmp send: %s", errText(ctx, err))
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return fail(start, "icmp: %s", errText(ctx, err))
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		e, isEcho := m.Body.(*icmp.Echo)
		if !isEcho || e.Seq != seq || (privileged && e.ID != id) {
			continue
		}
		if privileged && peer.String() != (&net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}).String() {
			continue
		}
		return ok(start)
	}
}

// --- script ---

type scriptChecker struct{ spec model.ScriptCheck }

// tail keeps the last bytes written to it.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b = append(w.b, p...)
	if len(w.b) > 256 {
		w.b = w.b[len(w.b)-256:]
	}
	w.mu.Unlock()
	return len(p), nil
}

func (c scriptChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.spec.Timeout.D())
	defer cancel()
	cmd := exec.CommandContext(ctx, c.spec.Path, c.spec.Args...)
	cmd.Env = append(os.Environ(), "RAFTLB_CHECK_ADDRESS="+t.Addr.Addr().String(),
		"RAFTLB_CHECK_PORT="+strconv.Itoa(int(t.CheckAddr().Port())))
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed whole on timeout: a shell script's
	// children must not outlive the check.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	lat := time.Since(start)
	if ctx.Err() != nil {
		return Result{Latency: lat, Err: fmt.Sprintf("script timed out after %s (process group killed)", c.spec.Timeout.D())}
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() < 0 {
			return Result{Latency: lat, Err: "script: " + err.Error()}
		}
		code = ee.ExitCode()
	}
	out.mu.Lock()
	msg := string(bytes.TrimSpace(out.b))
	out.mu.Unlock()
	switch {
	case code == 0:
		return Result{Up: true, Latency: lat}
	case code >= 2 && c.spec.Dynamic:
		w := code - 2
		return Result{Up: true, Latency: lat, Weight: &w}
	default:
		if msg != "" {
			return Result{Latency: lat, Err: fmt.Sprintf("script exit %d: %s", code, msg)}
		}
		return Result{Latency: lat, Err: fmt.Sprintf("script exit %d", code)}
	}
}
