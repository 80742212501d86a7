package nemesis

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/arp"
)

func TestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int) Attempt { return Attempt{Start: at(ms - 2), End: at(ms), OK: true} }
	fail := func(ms int) Attempt { return Attempt{Start: at(ms - 200), End: at(ms), Err: "timeout"} }
	as := []Attempt{ok(10), ok(20), fail(230), ok(300), ok(310), ok(320)}
	if g := Gap(as, at(0), at(320)); g != 280*time.Millisecond {
		t.Errorf("gap %v, want 280ms (20 → 300)", g)
	}
	// The window's edges count: nothing after 320 until 500.
	if g := Gap(as, at(0), at(500)); g != 280*time.Millisecond {
		t.Errorf("gap %v, want 280ms", g)
	}
	if g := Gap(as, at(0), at(700)); g != 380*time.Millisecond {
		t.Errorf("gap %v, want 380ms (320 → 700)", g)
	}
	if g := Gap(nil, at(0), at(100)); g != 100*time.Millisecond {
		t.Errorf("no success: gap %v, want the whole window", g)
	}
	// Successes outside the window are ignored.
	if g := Gap(as, at(295), at(320)); g != 10*time.Millisecond {
		t.Errorf("gap %v, want 10ms", g)
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 20; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if q := Quantile(ds, 0.99); q != 20*time.Millisecond {
		t.Errorf("p99 of 20: %v, want the largest", q)
	}
	if q := Quantile(ds, 0.5); q != 10500*time.Microsecond {
		t.Errorf("median of 20: %v, want 10.5ms", q)
	}
	if q := Quantile(ds[:3], 0.5); q != 2*time.Millisecond {
		t.Errorf("median of 3: %v", q)
	}
	if q := Quantile(nil, 0.5); q != 0 {
		t.Errorf("empty: %v", q)
	}
}

func TestSummarize(t *testing.T) {
	rs := []Result{
		{System: "a", Nemesis: KillLeader, Gap: 300 * time.Millisecond, Takeover: 280 * time.Millisecond, New: "d2"},
		{System: "a", Nemesis: KillLeader, Gap: 100 * time.Millisecond, Takeover: 90 * time.Millisecond, New: "d3",
			DualARP: []Dual{{Kind: "arp"}}},
		{System: "a", Nemesis: KillLeader, Err: errors.New("no recovery"), DualAddr: []Dual{{}, {}}},
		{System: "b", Nemesis: Handover, Gap: 20 * time.Millisecond, Takeover: -1, RestoreGap: 15 * time.Millisecond},
	}
	s := Summarize(rs)
	if len(s) != 2 {
		t.Fatalf("%d summaries", len(s))
	}
	a := s[0]
	if a.Rounds != 2 || a.Errors != 1 || a.GapMin != 100*time.Millisecond || a.GapMax != 300*time.Millisecond ||
		a.GapMedian != 200*time.Millisecond || a.DualAddr != 2 || a.DualARP != 1 || a.RoundsWithDual != 2 ||
		a.TakeoverMedian != 185*time.Millisecond || a.NewHolders["d2"] != 1 {
		t.Errorf("a: %+v", a)
	}
	if b := s[1]; b.TakeoverMedian != -1 || b.RestoreGapMax != 15*time.Millisecond {
		t.Errorf("b: %+v", b)
	}
}

func TestParseNemeses(t *testing.T) {
	if ns, err := ParseNemeses(""); err != nil || len(ns) != len(AllNemeses) {
		t.Errorf("empty: %v %v", ns, err)
	}
	if ns, err := ParseNemeses("partition, handover"); err != nil || len(ns) != 2 || ns[1] != Handover {
		t.Errorf("two: %v %v", ns, err)
	}
	if _, err := ParseNemeses("kill-all"); err == nil {
		t.Error("an unknown nemesis was accepted")
	}
}

func TestBodyName(t *testing.T) {
	full := []byte("HTTP/1.0 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nrs1\n")
	if n := bodyName(full); n != "rs1" {
		t.Errorf("got %q", n)
	}
	for i := range len(full) - 1 {
		if n := bodyName(full[:i]); n != "" {
			t.Errorf("partial answer of %d bytes gave %q", i, n)
		}
	}
}

func TestARPRequest(t *testing.T) {
	mac, _ := net.ParseMAC(monitorMAC)
	f, err := arpRequest(mac, netip.MustParseAddr("10.30.0.130"), netip.MustParseAddr(VIP))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x30, 0, 0, 0, 0x51, 0x08, 0x06, // Ethernet
		0, 1, 0x08, 0, 6, 4, 0, 1, // Ethernet/IPv4, request
		0x02, 0x30, 0, 0, 0, 0x51, 10, 30, 0, 130, // sender
		0, 0, 0, 0, 0, 0, 10, 30, 0, 100, // target
	}
	want = append(want, make([]byte, 18)...) // padding to 60 bytes
	if !bytes.Equal(f, want) {
		t.Errorf("frame\n%x\nwant\n%x", f, want)
	}
	if _, err := arpRequest(mac, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr(VIP)); err == nil {
		t.Error("an ARP request from an IPv6 address was built")
	}
}

func TestParseARP(t *testing.T) {
	// A director's reply to the checker's request from 10.30.0.130.
	reply := []byte{
		0x02, 0x30, 0, 0, 0, 0x51, 0x02, 0x30, 0, 0, 0, 0x11, 0x08, 0x06, // Ethernet
		0, 1, 0x08, 0, 6, 4, 0, 2, // Ethernet/IPv4, reply
		0x02, 0x30, 0, 0, 0, 0x11, 10, 30, 0, 100, // sender: the VIP at d1
		0x02, 0x30, 0, 0, 0, 0x51, 10, 30, 0, 130, // target: the checker
	}
	p, ok := parseARP(reply)
	if !ok {
		t.Fatal("reply not parsed")
	}
	if p.Operation != arp.OperationReply || p.SenderHardwareAddr.String() != "02:30:00:00:00:11" ||
		p.SenderIP != netip.MustParseAddr(VIP) || p.TargetIP != netip.MustParseAddr("10.30.0.130") {
		t.Errorf("parsed %+v", p)
	}
	if !arpSenders.Contains(p.TargetIP) || int(p.TargetIP.As4()[3]-arpSenderBase.As4()[3]) != 2 {
		t.Errorf("target %v: not slot 2 of %v", p.TargetIP, arpSenders)
	}
	padded := append(slices.Clone(reply), make([]byte, 18)...)
	if _, ok := parseARP(padded); !ok {
		t.Error("a padded reply was not parsed")
	}
	bad := func(i int, v byte) []byte { b := slices.Clone(reply); b[i] = v; return b }
	for name, b := range map[string][]byte{
		"truncated":                reply[:41],
		"not ARP":                  bad(13, 0x00),
		"not Ethernet":             bad(15, 6),
		"not IPv4":                 bad(16, 0x86),
		"8-byte hardware address":  bad(18, 8),
		"16-byte protocol address": bad(19, 16),
	} {
		if p, ok := parseARP(b); ok {
			t.Errorf("%s: parsed as %+v", name, p)
		}
	}
	if len(arpSenders.Addr().AsSlice()) != 4 || 1<<(32-arpSenders.Bits()) != arpSlots {
		t.Errorf("%v does not hold the %d sender addresses", arpSenders, arpSlots)
	}
}
