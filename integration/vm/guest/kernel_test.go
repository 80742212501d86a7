//go:build vmguest

package guest

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
)

// The kernel's own rules, found with ipvsadm and the Backend, that the
// replicated state must respect so that no write is refused on every
// retry (dataplane/ipvs/caps.go lists them and says where each is kept
// out of the state), and the idempotent operations against a cache that
// is wrong.

// refused runs ipvsadm in ns and fails the test if it succeeds; it returns
// what ipvsadm said.
func refused(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ipvsadm"}, args...)...).CombinedOutput()
	if err == nil {
		t.Fatalf("ipvsadm %s was accepted", strings.Join(args, " "))
	}
	return strings.TrimSpace(string(out))
}

// TestStaleCacheConverges: the reconciler over the real Backend, with its
// cache made wrong behind its back by ipvsadm. Each time the next
// incremental pass (Sync: no kernel read, no resync) makes the kernel what
// the state says, with no error and no drift counted.
func TestStaleCacheConverges(t *testing.T) {
	ns := "stale"
	b := backend(t, newNS(t, ns))
	r := dataplane.NewReconciler(b, dataplane.Options{Resync: -1})
	a := svc("tcp", "198.51.100.1:80", "wlc")
	c := svc("udp", "[2001:db8::53]:53", "rr")
	e := svc("tcp", "198.51.100.5:443", "rr")
	cur := table(a, dest("10.2.0.1:80", "nat", 1), dest("10.2.0.2:80", "nat", 3),
		c, dest("[2001:db8:2::1]:53", "dr", 1), dest("[2001:db8:2::2]:53", "dr", 1))
	r.FullPass(dataplane.Desired{Table: cur})
	requireKernelHas(t, b, ns, cur)
	first := r.Status()

	for _, step := range []struct {
		name     string
		operator [][]string // ipvsadm behind the reconciler's back
		next     func(dataplane.Table)
	}{
		{"service deleted, then one more destination", [][]string{{"-D", "-t", "198.51.100.1:80"}},
			func(n dataplane.Table) { d := dest("10.2.0.3:80", "nat", 1); n[a.Key()].Dests[d.Key()] = d }},
		{"destination deleted, then its weight", [][]string{{"-d", "-u", "[2001:db8::53]:53", "-r", "[2001:db8:2::1]:53"}},
			func(n dataplane.Table) { d := dest("[2001:db8:2::1]:53", "dr", 5); n[c.Key()].Dests[d.Key()] = d }},
		{"service deleted, then its scheduler", [][]string{{"-D", "-u", "[2001:db8::53]:53"}},
			func(n dataplane.Table) { vs := n[c.Key()]; vs.Scheduler = "wrr"; n[c.Key()] = vs }},
		{"service made by someone else, then asked for", [][]string{
			{"-A", "-t", "198.51.100.5:443", "-s", "lc"},
			{"-a", "-t", "198.51.100.5:443", "-r", "10.2.0.9:443", "-m", "-w", "9"},
			{"-a", "-t", "198.51.100.5:443", "-r", "10.2.0.8:443", "-m"}},
			func(n dataplane.Table) {
				n[e.Key()] = table(e, dest("10.2.0.9:443", "nat", 1), dest("10.2.0.7:443", "nat", 2))[e.Key()]
			}},
		{"deleting what is gone", [][]string{{"-D", "-t", "198.51.100.1:80"}, {"-d", "-t", "198.51.100.5:443", "-r", "10.2.0.7:443"}},
			func(n dataplane.Table) { delete(n, a.Key()); delete(n[e.Key()].Dests, "10.2.0.7:443") }},
	} {
		for _, args := range step.operator {
			inNS(t, ns, "ipvsadm", args...)
		}
		next := cur.Clone()
		step.next(next)
		r.Sync(dataplane.Desired{Table: next})
		st := r.Status()
		if len(st.Errors) != 0 || st.DriftRepairs != 0 || !st.LastResync.Equal(first.LastResync) {
			t.Fatalf("%s: errors %+v, drift repairs %d, resync at %v (want none since %v)", step.name, st.Errors, st.DriftRepairs, st.LastResync, first.LastResync)
		}
		requireKernelHas(t, b, ns, next)
		t.Logf("%s: converged in one incremental pass (%d kernel operations so far)", step.name, st.KernelOps)
		cur = next
	}
}

// TestCrossFamilyTun: the kernel accepts a tun destination of the other
// address family (IPv6 in IPv4 and IPv4 in IPv6, plain and fwmark
// services; ipvsadm shows it), refuses nat and dr across families, and the
// Backend programs, updates and deletes such destinations (it sends the
// destination's own family, which moby/ipvs leaves out).
func TestCrossFamilyTun(t *testing.T) {
	ns := "xfam"
	b := backend(t, newNS(t, ns))
	v4 := svc("tcp", "192.0.2.20:80", "wrr")
	v6 := svc("tcp", "[2001:db8::20]:80", "rr")
	fw := dataplane.Service{Fwmark: 20, Family: "inet", Scheduler: "rr"}
	want := table(v4, dest("[2001:db8:3::1]:80", "tun", 2), dest("10.3.0.1:80", "nat", 1),
		v6, dest("10.3.0.2:80", "tun", 1), dest("[2001:db8:3::2]:80", "tun", 1),
		fw, dest("[2001:db8:3::3]:0", "tun", 1))
	applyAll(t, b, dataplane.Table{}, addChanges(want))
	requireKernelHas(t, b, ns, want)

	next := want.Clone()
	d := dest("[2001:db8:3::1]:80", "tun", 7)
	d.UpperThreshold, d.LowerThreshold = 100, 10
	next[v4.Key()].Dests[d.Key()] = d
	delete(next[v6.Key()].Dests, "10.3.0.2:80")
	delete(next[fw.Key()].Dests, "[2001:db8:3::3]:0")
	applyAll(t, b, want, dataplane.Diff(want, next))
	requireKernelHas(t, b, ns, next)

	for _, fwd := range []string{"-m", "-g"} {
		t.Logf("ipvsadm %s across families: %s", fwd, refused(t, ns, "-a", "-t", "192.0.2.20:80", "-r", "[2001:db8:3::9]:80", fwd))
	}
	errs := b.Apply(next, []dataplane.Change{{Op: dataplane.AddDest, Service: v4, Dest: dest("[2001:db8:3::9]:80", "nat", 1)}})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "only tun forwarding crosses address families") {
		t.Fatalf("nat across families: %v", errs)
	}
	requireKernelHas(t, b, ns, next)
}

// TestSyncExcludesCrossFamily: a connection-sync daemon and a destination
// of the other family cannot share a network namespace; whichever comes
// second is refused with EINVAL, by ipvsadm and through the Backend, for
// both roles. Same-family tun is not affected. The FSM keeps the two
// apart in the replicated state (fsm: checkCrossFamilySync).
func TestSyncExcludesCrossFamily(t *testing.T) {
	ns := "xsync"
	b := backend(t, newNS(t, ns))
	inNS(t, ns, "ip", "link", "add", "s0", "type", "veth", "peer", "name", "s1")
	inNS(t, ns, "ip", "link", "set", "s0", "up")
	inNS(t, ns, "ip", "link", "set", "s1", "up")
	inNS(t, ns, "ip", "addr", "add", "10.9.9.1/24", "dev", "s0")
	daemons := []dataplane.SyncDaemon{{Role: "master", SyncID: 5, Interface: "s0"}, {Role: "backup", SyncID: 5, Interface: "s0"}}

	s := svc("tcp", "192.0.2.30:80", "rr")
	cross := dest("[2001:db8:4::1]:80", "tun", 1)
	same := dest("10.4.0.1:80", "tun", 1)
	withCross := table(s, cross)
	applyAll(t, b, dataplane.Table{}, addChanges(withCross))
	for _, d := range daemons {
		err := b.StartSyncDaemon(d)
		if !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("%s with a destination of the other family: %v, want EINVAL", d.Role, err)
		}
		t.Logf("Backend: %v", err)
		t.Logf("ipvsadm: %s", refused(t, ns, "--start-daemon", d.Role, "--mcast-interface", "s0", "--syncid", "5"))
	}

	applyAll(t, b, withCross, dataplane.Diff(withCross, table(s)))
	for _, d := range daemons {
		if err := b.StartSyncDaemon(d); err != nil { // without it, the daemon runs
			t.Fatalf("%s without it: %v", d.Role, err)
		}
		t.Cleanup(func() { b.StopSyncDaemon(d.Role) })
		errs := b.Apply(table(s), []dataplane.Change{{Op: dataplane.AddDest, Service: s, Dest: cross}})
		if len(errs) != 1 || !errors.Is(errs[0].Err, syscall.EINVAL) {
			t.Fatalf("a destination of the other family while the %s runs: %v, want EINVAL", d.Role, errs)
		}
		t.Logf("Backend: %v", errs[0])
		t.Logf("ipvsadm: %s", refused(t, ns, "-a", "-t", "192.0.2.30:80", "-r", "[2001:db8:4::1]:80", "-i"))
		if err := b.StopSyncDaemon(d.Role); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.StartSyncDaemon(daemons[0]); err != nil {
		t.Fatal(err)
	}
	applyAll(t, b, table(s), []dataplane.Change{{Op: dataplane.AddDest, Service: s, Dest: same}})
	requireKernelHas(t, b, ns, table(s, same))
}

// TestThresholdOrder: the kernel refuses a lower threshold above the upper
// one with ERANGE, also when the upper one is 0 (no threshold), which
// model.NormalizeReal therefore refuses too.
func TestThresholdOrder(t *testing.T) {
	ns := "thresh"
	b := backend(t, newNS(t, ns))
	s := svc("tcp", "192.0.2.40:80", "wlc")
	cur := table(s)
	applyAll(t, b, dataplane.Table{}, addChanges(cur))
	for i, tc := range []struct {
		upper, lower uint32
		ok           bool
	}{{0, 5, false}, {5, 10, false}, {5, 5, true}, {0, 0, true}, {10, 5, true}} {
		d := dest(fmt.Sprintf("10.5.0.%d:80", i+1), "nat", 1)
		d.UpperThreshold, d.LowerThreshold = tc.upper, tc.lower
		errs := b.Apply(cur, []dataplane.Change{{Op: dataplane.AddDest, Service: s, Dest: d}})
		args := []string{"-a", "-t", "192.0.2.40:80", "-r", fmt.Sprintf("10.5.1.%d:80", i+1), "-m", "-x", fmt.Sprint(tc.upper), "-y", fmt.Sprint(tc.lower)}
		if tc.ok {
			if len(errs) != 0 {
				t.Fatalf("upper %d lower %d: %v", tc.upper, tc.lower, errs)
			}
			inNS(t, ns, "ipvsadm", args...)
			cur[s.Key()].Dests[d.Key()] = d
			continue
		}
		if len(errs) != 1 || !errors.Is(errs[0].Err, syscall.ERANGE) {
			t.Fatalf("upper %d lower %d: %v, want ERANGE", tc.upper, tc.lower, errs)
		}
		t.Logf("upper %d lower %d: Backend: %v; ipvsadm: %s", tc.upper, tc.lower, errs[0], refused(t, ns, args...))
	}
	dump, err := b.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(dump[s.Key()].Dests); n != 6 {
		t.Fatalf("%d destinations, want the 3 of the Backend and the 3 of ipvsadm", n)
	}
}

// TestCapabilitiesProbe: the Backend's capabilities list exactly the
// schedulers this kernel has (not twos on 6.1), found in a namespace of
// its own: no namespace the tests use holds anything after it.
func TestCapabilitiesProbe(t *testing.T) {
	ns := "caps"
	b := backend(t, newNS(t, ns))
	have, missing := availableSchedulers()
	got := b.Capabilities().Schedulers
	if !slices.Equal(got, have) {
		t.Fatalf("capabilities list %v, the kernel has %v (lacks %v)", got, have, missing)
	}
	for _, where := range [][]string{{"ip", "netns", "exec", ns, "ipvsadm", "-Ln"}, {"ipvsadm", "-Ln"}} {
		tbl, err := ParseList(run(t, where[0], where[1:]...))
		if err != nil {
			t.Fatal(err)
		}
		if len(tbl) != 0 {
			t.Fatalf("%s: the probe left %v", strings.Join(where, " "), tbl)
		}
	}
	t.Logf("schedulers: %v (missing %v)", got, missing)
}
