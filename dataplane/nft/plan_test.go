package nft

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/raftlb/raftlb/dataplane"
	"golang.org/x/sys/unix"
)

// planBytes serialises everything a plan would write, for comparisons.
func planBytes(t *testing.T, p *servicePlan) []byte {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s %x keep=%t\n", p.chain, p.destSet, p.vmap, p.vmapKey, p.keep)
	rules := func(name string, rs []rulePlan) {
		for _, r := range rs {
			fmt.Fprintf(&b, "%s %q:", name, r.comment)
			for _, e := range r.exprs {
				m, err := expr.Marshal(unix.NFPROTO_INET, e)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, " %x", m)
			}
			for _, e := range r.sched {
				fmt.Fprintf(&b, " [%x %x %v %t]", e.Key, e.Val, e.VerdictData, e.IntervalEnd)
			}
			b.WriteString("\n")
		}
	}
	rules(p.chain, p.rules)
	for _, pin := range p.pins {
		rules(pin.name, pin.rules)
	}
	for _, e := range p.destElems {
		fmt.Fprintf(&b, "dest %x %s\n", e.Key, e.Comment)
	}
	return b.Bytes()
}

// epochsFor gives every destination an epoch (1, 2, … in key order).
func epochsFor(vs dataplane.VirtualService) map[string]uint32 {
	out := map[string]uint32{}
	for i, k := range slices.Sorted(maps.Keys(vs.Dests)) {
		out[k] = uint32(i + 1)
	}
	return out
}

func TestPlanIsDeterministic(t *testing.T) {
	for key, vs := range sampleTable() {
		p1, err := planService(vs, epochsFor(vs))
		if err != nil {
			t.Fatal(err)
		}
		// The same service built with its destinations inserted in the
		// opposite order (map iteration differs too).
		again := dataplane.VirtualService{Service: vs.Service, Dests: map[string]dataplane.Destination{}}
		keys := slices.Sorted(maps.Keys(vs.Dests))
		slices.Reverse(keys)
		for _, k := range keys {
			again.Dests[k] = vs.Dests[k]
		}
		for range 5 {
			p2, err := planService(again, epochsFor(again))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := planBytes(t, p1), planBytes(t, p2); !bytes.Equal(a, b) {
				t.Fatalf("%s: plans differ:\n%s\n%s", key, a, b)
			}
		}
	}
}

func TestSlotsFollowWeights(t *testing.T) {
	s := svc("tcp/10.0.0.1:80", "wrr")
	vs := vsOf(s, dest("10.1.0.1:80", 300), dest("10.1.0.2:80", 100), dest("10.1.0.3:80", 0), dest("10.1.0.4:80", 200))
	ss, mod, err := slots(vs, sortedDests(vs))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range ss {
		got = append(got, fmt.Sprintf("%s=%d", x.dest.Address, x.n))
	}
	if want := "10.1.0.1=3 10.1.0.2=1 10.1.0.4=2"; strings.Join(got, " ") != want || mod != 6 {
		t.Fatalf("slots %v mod %d, want %s mod 6", got, mod, want)
	}
	vs.Scheduler = "rr" // rr ignores weights but not weight 0
	if ss, mod, _ = slots(vs, sortedDests(vs)); len(ss) != 3 || mod != 3 {
		t.Fatalf("rr: %d slots mod %d, want 3 and 3", len(ss), mod)
	}
}

func TestPlanLayout(t *testing.T) {
	// No destination with weight > 0: the chain drops new connections.
	p, err := planService(vsOf(svc("tcp/10.0.0.1:80", "rr"), dest("10.1.0.1:80", 0)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.rules) != 1 || len(p.rules[0].exprs) != 1 {
		t.Fatalf("rules %v, want one drop", p.rules)
	}
	if v, ok := p.rules[0].exprs[0].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
		t.Fatalf("rule %#v, want drop", p.rules[0].exprs[0])
	}
	// Persistent: one sticky rule per destination, then the schedule,
	// and a pin per destination (weight 0 too: its clients stay).
	ps := svc("tcp/10.0.0.1:443", "wrr")
	ps.Timeout = 60
	pvs := vsOf(ps, dest("10.1.0.1:443", 1), dest("10.1.0.2:443", 0))
	if _, err := planService(pvs, nil); err == nil {
		t.Fatal("a persistent service was planned without epochs")
	}
	p, err = planService(pvs, epochsFor(pvs))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.rules) != 3 || len(p.pins) != 2 || p.rules[2].sched == nil || p.pinSet != pinSetOf(ps) {
		t.Fatalf("%d rules %d pins, want 3 and 2", len(p.rules), len(p.pins))
	}
	if p.rules[0].comment != formatService(ps) || p.rules[1].comment != "" {
		t.Fatalf("comments %q %q", p.rules[0].comment, p.rules[1].comment)
	}
}

func TestNamesRoundTrip(t *testing.T) {
	for key, vs := range sampleTable() {
		id, ok := parseSuffix(suffix(vs.Service))
		if !ok || id.Key() != key || !id.Equal(identity(vs.Service)) {
			t.Errorf("%s: parseSuffix(%q) = %+v, %v", key, suffix(vs.Service), id, ok)
		}
		vmap, k := dispatchEntry(vs.Service)
		if id2, err := parseDispatchKey(vmap, k); err != nil || !id2.Equal(identity(vs.Service)) {
			t.Errorf("%s: parseDispatchKey = %+v, %v", key, id2, err)
		}
		for _, d := range vs.Dests {
			if sfx, ok := pinService(pinName(vs.Service, d)); !ok || sfx != suffix(vs.Service) {
				t.Errorf("%s: pinService(%q) = %q, %v", key, pinName(vs.Service, d), sfx, ok)
			}
		}
	}
	for _, bad := range []string{"tcp_10.0.0.1", "tcp_010.0.0.1_80", "tcp_10.0.0.1_080", "icmp_10.0.0.1_80", "fwm_inet_0", "fwm_ip_7", "udp_10.0.0.1_65536"} {
		if _, ok := parseSuffix(bad); ok {
			t.Errorf("parseSuffix(%q) accepted a name suffix never writes", bad)
		}
	}
}

func TestDescriptionRoundTrip(t *testing.T) {
	for key, vs := range sampleTable() {
		got, err := parseService(identity(vs.Service), formatService(vs.Service))
		if err != nil || !got.Equal(vs.Service) {
			t.Errorf("%s: %+v, %v", key, got, err)
		}
	}
	id := identity(svc("tcp/10.0.0.1:80", ""))
	for _, bad := range []string{"", "raftlb v2 family=inet sched=rr flags=- persist=0 netmask=0",
		"raftlb v1 family=inet sched=rr flags=- persist=00 netmask=0", "raftlb v1 sched=rr family=inet flags=- persist=0 netmask=0",
		"raftlb v1 family=inet sched=rr flags=- persist=0 netmask=0 extra=1"} {
		if _, err := parseService(id, bad); err == nil {
			t.Errorf("parseService(%q) accepted it", bad)
		}
	}
	for _, tc := range []struct {
		w int
		e uint32
	}{{0, 0}, {65535, 0}, {3, 1}, {1, 4294967295}} {
		if w, e, err := parseDest(formatDest(tc.w, tc.e)); err != nil || w != tc.w || e != tc.e {
			t.Errorf("destination comment round trip %v: %d %d %v", tc, w, e, err)
		}
	}
	for _, bad := range []string{"weight=", "weight=+1", "weight=01", "w=1", "weight=1 epoch=0", "weight=1 epoch=01", "weight=1 epoch=4294967296", "weight=1  epoch=2"} {
		if _, _, err := parseDest(bad); err == nil {
			t.Errorf("parseDest(%q) accepted it", bad)
		}
	}
}

func TestCommentParsingIsBoundsChecked(t *testing.T) {
	for _, ud := range [][]byte{nil, {0}, {0, 5, 'a'}, {1, 1, 0}, {0, 0}} {
		if c, ok := parseComment(ud); ok {
			t.Errorf("parseComment(%x) = %q", ud, c)
		}
	}
	if c, ok := parseComment(commentData("weight=1")); !ok || c != "weight=1" {
		t.Errorf("parseComment round trip: %q %v", c, ok)
	}
}

func TestValidationNamesNftables(t *testing.T) {
	base := svc("tcp/10.0.0.1:80", "rr")
	for _, sched := range []string{"lc", "wlc", "lblc", "lblcr", "sed", "nq", "mh", "fo", "ovf", "twos"} {
		s := base
		s.Scheduler = sched
		err := validateService(s)
		if !errors.Is(err, ErrNotExpressible) || !strings.Contains(err.Error(), "nftables") {
			t.Errorf("scheduler %s: %v", sched, err)
		}
	}
	ops := base
	ops.Flags = []string{"ops"}
	if err := validateService(ops); !errors.Is(err, ErrNotExpressible) {
		t.Errorf("ops: %v", err)
	}
	for name, d := range map[string]dataplane.Destination{
		"dr":        {Address: addr("10.1.0.1"), Port: 80, Weight: 1, Forward: "dr"},
		"tun":       {Address: addr("10.1.0.1"), Port: 80, Weight: 1, Forward: "tun"},
		"threshold": {Address: addr("10.1.0.1"), Port: 80, Weight: 1, Forward: "nat", UpperThreshold: 10},
		"family":    {Address: addr("2001:db8::1"), Port: 80, Weight: 1, Forward: "nat"},
	} {
		if err := validateDest(base, d); !errors.Is(err, ErrNotExpressible) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := validateDest(base, dataplane.Destination{Address: addr("10.1.0.1"), Weight: 1, Forward: "nat"}); err == nil {
		t.Error("port 0 on a port service was accepted")
	}
	mixed := svc("tcp/10.0.0.1:0", "rr")
	mixed.Timeout = 60
	if _, err := keepsPort(vsOf(mixed, dest("10.1.0.1:0", 1), dest("10.1.0.2:80", 1))); !errors.Is(err, ErrNotExpressible) {
		t.Errorf("mixed ports: %v", err)
	}
	c := Capabilities()
	if !slices.Equal(c.Schedulers, []string{"rr", "wrr", "sh", "dh"}) || !slices.Equal(c.Forwards, []string{"nat"}) ||
		!c.Persistence || !c.Fwmark || c.Thresholds {
		t.Errorf("capabilities %+v", c)
	}
}
