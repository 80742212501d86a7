package nft

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/raftlb/raftlb/dataplane"
	"golang.org/x/sys/unix"
)

// side returns an nftables connection into namespace ns that is not the
// backend's: the "someone else" of the drift tests.
func side(t *testing.T, ns string) *nftables.Conn {
	t.Helper()
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var raftlbTable = &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}

func mustFlush(t *testing.T, c *nftables.Conn) {
	t.Helper()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// ruleHandles returns the handles of every rule of every chain of raftlb's
// table, by chain.
func ruleHandles(t *testing.T, c *nftables.Conn) map[string][]uint64 {
	t.Helper()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for _, ch := range chains {
		if ch.Table.Name != tableName {
			continue
		}
		rules, err := c.GetRules(raftlbTable, ch)
		if err != nil {
			t.Fatal(err)
		}
		out[ch.Name] = []uint64{}
		for _, r := range rules {
			out[ch.Name] = append(out[ch.Name], r.Handle)
		}
	}
	return out
}

func TestDumpWithoutTableIsEmpty(t *testing.T) {
	_, _, b := nsBackend(t)
	if tbl := mustDump(t, b); len(tbl) != 0 {
		t.Fatalf("dump of an empty namespace: %v", tbl)
	}
}

func TestDumpAfterApplyEqualsTable(t *testing.T) {
	_, ns, b := nsBackend(t)
	want := sampleTable()
	program(t, b, dataplane.Table{}, want)
	if d := tableDiff(mustDump(t, b), want); d != "" {
		t.Fatalf("dump differs:\n%s\ndrift: %v", d, b.DriftReasons())
	}
	// A second backend (a restarted director) reads the same.
	if d := tableDiff(mustDump(t, openBackend(t, ns)), want); d != "" {
		t.Fatalf("fresh backend: dump differs:\n%s", d)
	}
}

// randomTable returns a table within the backend's capabilities.
func randomTable(r *rand.Rand) dataplane.Table {
	t := dataplane.Table{}
	for range r.IntN(7) {
		six := r.IntN(3) == 0
		a := func(net string, i int) netip.Addr {
			if six {
				return netip.MustParseAddr(fmt.Sprintf("fd00:%s::%x", net, i))
			}
			return netip.MustParseAddr(fmt.Sprintf("10.%s.0.%d", net, i))
		}
		var s dataplane.Service
		switch r.IntN(4) {
		case 0:
			s = dataplane.Service{Fwmark: uint32(1 + r.IntN(5)), Family: pick(six, "inet6", "inet")}
		case 1:
			s = dataplane.Service{Protocol: "tcp", Address: a("1", 1+r.IntN(3)), Family: pick(six, "inet6", "inet"), Timeout: uint32(1 + r.IntN(900))}
		default:
			s = dataplane.Service{Protocol: []string{"tcp", "udp", "sctp"}[r.IntN(3)], Address: a("1", 1+r.IntN(3)), Port: uint16(1 + r.IntN(3)),
				Family: pick(six, "inet6", "inet")}
		}
		s.Scheduler = schedulers[r.IntN(len(schedulers))]
		if r.IntN(3) == 0 {
			s.Flags = slices.Sorted(slices.Values([]string{"sh-port", "sh-fallback"}[:1+r.IntN(2)]))
		}
		if s.Timeout == 0 && r.IntN(3) == 0 {
			s.Timeout = uint32(1 + r.IntN(900))
		}
		if s.Timeout > 0 && r.IntN(2) == 0 {
			s.Netmask = 1 + r.IntN(pick(six, 127, 31))
		}
		vs := dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
		portless := s.Port == 0
		withPorts := !portless || (s.Fwmark != 0 && r.IntN(2) == 0)
		for range r.IntN(5) {
			d := dataplane.Destination{Address: a("2", 1+r.IntN(6)), Weight: []int{0, 1, 2, 3, 65535}[r.IntN(5)], Forward: "nat"}
			if withPorts {
				d.Port = uint16(1 + r.IntN(2))
			}
			vs.Dests[d.Key()] = d
		}
		t[s.Key()] = vs
	}
	return t
}

func TestApplyDumpProperty(t *testing.T) {
	_, _, b := nsBackend(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	prev := dataplane.Table{}
	for i := range 150 {
		want := randomTable(r)
		program(t, b, prev, want)
		got := mustDump(t, b)
		if d := tableDiff(got, want); d != "" {
			t.Fatalf("step %d: dump differs:\n%s\ndrift: %v", i, d, b.DriftReasons())
		}
		if changes := dataplane.Diff(got, want); len(changes) != 0 {
			t.Fatalf("step %d: dump needs changes %v", i, changes)
		}
		prev = want
	}
}

// driftCase changes the kernel behind the backend's back and says what
// Dump must then show for the sample table's services.
type driftCase struct {
	name   string
	do     func(t *testing.T, c *nftables.Conn, ns string)
	broken []string // services returned with their identity only
	absent []string // services not returned (nil with all: every one)
	all    bool     // every service is absent
	extra  func(t *testing.T, got dataplane.Table)
}

func TestDriftIsDetectedAndRepaired(t *testing.T) {
	rr := "tcp/10.0.0.1:80"
	sfx := "tcp_10.0.0.1_80"
	rrKey := func() []byte { _, k := dispatchEntry(svc(rr, "")); return k }
	cases := []driftCase{
		{name: "table deleted", all: true, do: func(t *testing.T, c *nftables.Conn, ns string) {
			c.DelTable(raftlbTable)
			mustFlush(t, c)
		}},
		{name: "nft flush ruleset", all: true, do: func(t *testing.T, c *nftables.Conn, ns string) {
			if _, err := exec.LookPath("nft"); err == nil {
				if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "flush", "ruleset").CombinedOutput(); err != nil {
					t.Fatalf("nft flush ruleset: %v: %s", err, out)
				}
				return
			}
			c.FlushRuleset() // the same request the nft tool sends
			mustFlush(t, c)
		}},
		{name: "service chain and sets deleted", absent: []string{rr}, do: func(t *testing.T, c *nftables.Conn, ns string) {
			if err := c.SetDeleteElements(&nftables.Set{Table: raftlbTable, Name: mapServices4}, []nftables.SetElement{{Key: rrKey()}}); err != nil {
				t.Fatal(err)
			}
			ch := &nftables.Chain{Table: raftlbTable, Name: prefixChain + sfx}
			c.FlushChain(ch)
			c.DelChain(ch)
			c.DelSet(&nftables.Set{Table: raftlbTable, Name: prefixDests + sfx})
			mustFlush(t, c)
		}},
		{name: "service chain deleted", broken: []string{rr}, do: func(t *testing.T, c *nftables.Conn, ns string) {
			if err := c.SetDeleteElements(&nftables.Set{Table: raftlbTable, Name: mapServices4}, []nftables.SetElement{{Key: rrKey()}}); err != nil {
				t.Fatal(err)
			}
			ch := &nftables.Chain{Table: raftlbTable, Name: prefixChain + sfx}
			c.FlushChain(ch)
			c.DelChain(ch)
			mustFlush(t, c)
		}},
		{name: "rule deleted", broken: []string{rr}, do: func(t *testing.T, c *nftables.Conn, ns string) {
			rules, err := c.GetRules(raftlbTable, &nftables.Chain{Name: prefixChain + sfx})
			if err != nil || len(rules) == 0 {
				t.Fatal(rules, err)
			}
			if err := c.DelRule(rules[0]); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, c)
		}},
		{name: "rule edited", broken: []string{rr}, do: func(t *testing.T, c *nftables.Conn, ns string) {
			rules, err := c.GetRules(raftlbTable, &nftables.Chain{Name: prefixChain + sfx})
			if err != nil || len(rules) == 0 {
				t.Fatal(rules, err)
			}
			r := rules[0]
			c.ReplaceRule(&nftables.Rule{Table: raftlbTable, Chain: r.Chain, Handle: r.Handle, UserData: r.UserData,
				Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
			mustFlush(t, c)
		}},
		{name: "dispatch entry points elsewhere", broken: []string{rr}, do: func(t *testing.T, c *nftables.Conn, ns string) {
			m := &nftables.Set{Table: raftlbTable, Name: mapServices4}
			if err := c.SetDeleteElements(m, []nftables.SetElement{{Key: rrKey()}}); err != nil {
				t.Fatal(err)
			}
			if err := c.SetAddElements(m, []nftables.SetElement{{Key: rrKey(), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "svc_tcp_10.0.0.2_80"}}}); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, c)
		}},
		{name: "base rule deleted", broken: slices.Collect(func(yield func(string) bool) {
			for k := range sampleTable() {
				if !yield(k) {
					return
				}
			}
		}), do: func(t *testing.T, c *nftables.Conn, ns string) {
			rules, err := c.GetRules(raftlbTable, &nftables.Chain{Name: chainPrerouting})
			if err != nil || len(rules) == 0 {
				t.Fatal(rules, err)
			}
			if err := c.DelRule(rules[len(rules)-1]); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, c)
		}},
		{name: "destination added behind raftlb's back", do: func(t *testing.T, c *nftables.Conn, ns string) {
			d := dest("10.1.0.9:8080", 0)
			if err := c.SetAddElements(&nftables.Set{Table: raftlbTable, Name: prefixDests + sfx},
				[]nftables.SetElement{{Key: padDest(ipv4, d), Comment: formatDest(0, 0)}}); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, c)
		}, extra: func(t *testing.T, got dataplane.Table) {
			// A destination with weight 0 is not in the schedule map,
			// so the rules still match: Dump reports the kernel's
			// destination, and the diff deletes it.
			if _, ok := got[rr].Dests["10.1.0.9:8080"]; !ok || got[rr].Scheduler == "" {
				t.Fatalf("dump %+v: want the extra destination reported", got[rr])
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ns, b := nsBackend(t)
			want := sampleTable()
			program(t, b, dataplane.Table{}, want)
			tc.do(t, side(t, ns), ns)
			got := mustDump(t, b)
			checkDrift(t, tc, got, want)
			program(t, b, got, want)
			if d := tableDiff(mustDump(t, b), want); d != "" {
				t.Fatalf("after repair:\n%s\ndrift: %v", d, b.DriftReasons())
			}
			// A backend that did not write it reads the same.
			if d := tableDiff(mustDump(t, openBackend(t, ns)), want); d != "" {
				t.Fatalf("fresh backend after repair:\n%s", d)
			}
		})
	}
}

func TestDriftedServiceCanBeDeleted(t *testing.T) {
	rr := "tcp/10.0.0.1:80"
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistent=%t", persistent), func(t *testing.T) {
			_, ns, b := nsBackend(t)
			want := sampleTable()
			vs := want[rr]
			if persistent {
				vs.Timeout = 60
				want[rr] = vs
			}
			program(t, b, dataplane.Table{}, want)
			c := side(t, ns)
			rules, err := c.GetRules(raftlbTable, &nftables.Chain{Name: chainOf(vs.Service)})
			if err != nil || len(rules) == 0 {
				t.Fatal(rules, err)
			}
			if err := c.DelRule(rules[0]); err != nil {
				t.Fatal(err)
			}
			mustFlush(t, c)
			got := mustDump(t, b)
			if got[rr].Scheduler != "" {
				t.Fatalf("dump %+v, want identity only", got[rr])
			}
			delete(want, rr)
			program(t, b, got, want)
			if d := tableDiff(mustDump(t, b), want); d != "" {
				t.Fatal(d)
			}
			chains, _ := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
			sets, _ := c.GetSets(raftlbTable)
			for _, ch := range chains {
				if strings.Contains(ch.Name, suffix(vs.Service)) {
					t.Errorf("chain %s left behind", ch.Name)
				}
			}
			for _, s := range sets {
				if strings.Contains(s.Name, suffix(vs.Service)) {
					t.Errorf("set %s left behind", s.Name)
				}
			}
		})
	}
}

func checkDrift(t *testing.T, tc driftCase, got, want dataplane.Table) {
	t.Helper()
	if tc.all {
		if len(got) != 0 {
			t.Fatalf("dump %v, want empty", got)
		}
		return
	}
	for k, vs := range want {
		g, ok := got[k]
		switch {
		case slices.Contains(tc.absent, k):
			if ok {
				t.Errorf("%s: dumped %+v, want absent", k, g)
			}
		case slices.Contains(tc.broken, k):
			if !ok || g.Scheduler != "" || len(g.Dests) != 0 || g.Key() != k {
				t.Errorf("%s: dumped %+v, want identity only", k, g)
			}
		case tc.extra != nil && k == "tcp/10.0.0.1:80":
		default:
			if d := tableDiff(dataplane.Table{k: g}, dataplane.Table{k: vs}); d != "" {
				t.Errorf("untouched service: %s", d)
			}
		}
	}
	if tc.extra != nil {
		tc.extra(t, got)
	}
}

func TestNewProbesAndLeavesNothing(t *testing.T) {
	_, ns, b := nsBackend(t)
	if b.Name() != "nft" {
		t.Fatalf("name %q", b.Name())
	}
	tables, err := side(t, ns).ListTables()
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Fatalf("New left tables behind: %v", tables[0].Name)
	}
	if _, err := New(WithNetNSPath("/run/netns/no-such-namespace")); err == nil {
		t.Fatal("New accepted a missing namespace")
	}
}
