package fence

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
)

// installMessages returns the netlink messages of New's transaction, from a
// fake socket.
func installMessages(t *testing.T) [][]byte {
	t.Helper()
	var got [][]byte
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		for _, m := range req {
			got = append(got, m.Data)
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := newLayout().install(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLayoutDeterministic(t *testing.T) {
	a, b := newLayout(), newLayout()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two layouts differ")
	}
	ma, mb := installMessages(t), installMessages(t)
	if len(ma) == 0 || len(ma) != len(mb) {
		t.Fatalf("install sent %d then %d messages", len(ma), len(mb))
	}
	for i := range ma {
		if !bytes.Equal(ma[i], mb[i]) {
			t.Fatalf("message %d differs between two installs", i)
		}
	}
	// 3 tables, 10 sets, 4 chains each added and flushed, 6 rules, plus
	// the batch begin and end (egress chains come with SetVIPs).
	if want := 2 + 3 + 10 + 4*2 + 6; len(ma) != want {
		t.Errorf("install sent %d messages, want %d", len(ma), want)
	}
}

func TestLayoutShape(t *testing.T) {
	l := newLayout()
	ids := map[uint32]bool{}
	for _, s := range l.sets() {
		if ids[s.ID] {
			t.Errorf("set %s: duplicate ID %d", s.Name, s.ID)
		}
		ids[s.ID] = true
		if s.Table.Name != TableName {
			t.Errorf("set %s in table %s", s.Name, s.Table.Name)
		}
	}
	for _, s := range l.leasedSets() {
		if !s.HasTimeout {
			t.Errorf("leased set %s has no timeout flag", s.Name)
		}
	}
	perChain := map[string]int{}
	for _, r := range l.rules {
		perChain[family(r.Table.Family)+"/"+r.Chain.Name]++
	}
	want := map[string]int{"arp/arp_in": 1, "arp/arp_out": 1, "inet/prerouting": 3, "inet/output": 1}
	if !reflect.DeepEqual(perChain, want) {
		t.Errorf("rules per chain = %v, want %v", perChain, want)
	}
	for _, c := range l.chains {
		if c.Table.Family == nftables.TableFamilyINet && *c.Priority != -300 {
			t.Errorf("chain %s priority %d, want raw (-300)", c.Name, *c.Priority)
		}
	}
	// The egress chain of an interface: bound to it, with the GARP and the
	// NA rule, both looking up the netdev table's own sets.
	c, rules := l.egress("eth7")
	if c.Name != "egress_eth7" || c.Device != "eth7" || c.Table != l.netdev || *c.Hooknum != *nftables.ChainHookEgress || *c.Priority != -300 {
		t.Errorf("egress chain %s device %s table %s hook %d priority %d", c.Name, c.Device, family(c.Table.Family), *c.Hooknum, *c.Priority)
	}
	if len(rules) != 2 {
		t.Fatalf("egress chain has %d rules, want 2", len(rules))
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if lk, ok := e.(*expr.Lookup); ok && lk.SetID < l.devVIPs4.ID {
				t.Errorf("egress rule looks up set %s (ID %d) of another table", lk.SetName, lk.SetID)
			}
		}
	}
}
