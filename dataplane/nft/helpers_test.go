package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/internal/netlab"
)

// nsBackend returns a lab with one namespace and a Backend programming it.
func nsBackend(t *testing.T) (*netlab.Lab, string, *Backend) {
	t.Helper()
	lab := netlab.New(t)
	ns := lab.Netns("dir")
	return lab, ns, openBackend(t, ns)
}

func openBackend(t *testing.T, ns string) *Backend {
	t.Helper()
	b, err := New(WithNetNSPath("/run/netns/" + ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// mustApply applies changes to what from says b holds (the reconciler's
// cache).
func mustApply(t *testing.T, b *Backend, from dataplane.Table, changes []dataplane.Change) {
	t.Helper()
	if errs := b.Apply(from, changes); len(errs) > 0 {
		t.Fatalf("Apply: %v", errs)
	}
}

// program applies the changes that build tbl from what b holds.
func program(t *testing.T, b *Backend, from, to dataplane.Table) {
	t.Helper()
	mustApply(t, b, from, dataplane.Diff(from, to))
}

func mustDump(t *testing.T, b *Backend) dataplane.Table {
	t.Helper()
	tbl, err := b.Dump()
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

// tableDiff describes how two tables differ ("" if they are equal; a nil
// and an empty destination map are the same).
func tableDiff(got, want dataplane.Table) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		w := want[k]
		switch {
		case !ok:
			out = append(out, "missing "+k)
		case !g.Service.Equal(w.Service):
			out = append(out, fmt.Sprintf("%s: service %+v, want %+v", k, g.Service, w.Service))
		case !maps.Equal(g.Dests, w.Dests):
			out = append(out, fmt.Sprintf("%s: dests %v, want %v", k, g.Dests, w.Dests))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	return strings.Join(out, "\n")
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func svc(key, sched string) dataplane.Service {
	proto, rest, _ := strings.Cut(key, "/")
	if proto == "fwmark" {
		fam, mark, _ := strings.Cut(rest, "/")
		var m uint32
		fmt.Sscan(mark, &m)
		return dataplane.Service{Fwmark: m, Family: fam, Scheduler: sched}
	}
	ap := netip.MustParseAddrPort(rest)
	return dataplane.Service{Protocol: proto, Address: ap.Addr(), Port: ap.Port(), Family: familyOf(ap.Addr()), Scheduler: sched}
}

func dest(ap string, w int) dataplane.Destination {
	a := netip.MustParseAddrPort(ap)
	return dataplane.Destination{Address: a.Addr(), Port: a.Port(), Weight: w, Forward: "nat"}
}

func vsOf(s dataplane.Service, ds ...dataplane.Destination) dataplane.VirtualService {
	vs := dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
	for _, d := range ds {
		vs.Dests[d.Key()] = d
	}
	return vs
}

func tableOf(vss ...dataplane.VirtualService) dataplane.Table {
	t := dataplane.Table{}
	for _, vs := range vss {
		t[vs.Key()] = vs
	}
	return t
}

// sampleTable uses every feature: each scheduler, both families, the three
// kinds of service, persistence with and without a netmask, weight 0.
func sampleTable() dataplane.Table {
	persistent := svc("tcp/10.0.0.1:0", "rr")
	persistent.Timeout = 300
	sh6 := svc("sctp/[2001:db8::1]:9", "sh")
	sh6.Flags, sh6.Timeout, sh6.Netmask = []string{"sh-port"}, 60, 64
	fw := svc("fwmark/inet/7", "dh")
	fw6 := svc("fwmark/inet6/8", "wrr")
	return tableOf(
		vsOf(svc("tcp/10.0.0.1:80", "rr"), dest("10.1.0.1:8080", 1), dest("10.1.0.2:8080", 1)),
		vsOf(svc("udp/10.0.0.1:53", "wrr"), dest("10.1.0.1:53", 3), dest("10.1.0.2:53", 1), dest("10.1.0.3:53", 0)),
		vsOf(persistent, dest("10.1.0.1:0", 1), dest("10.1.0.2:0", 2)),
		vsOf(sh6, dest("[2001:db8:1::1]:9", 2), dest("[2001:db8:1::2]:9", 4)),
		vsOf(fw, dest("10.1.0.1:0", 1)),
		vsOf(fw6, dest("[2001:db8:1::1]:443", 5)),
		vsOf(svc("tcp/10.0.0.2:80", "sh")),
	)
}
