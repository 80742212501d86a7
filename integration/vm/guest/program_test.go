//go:build vmguest

package guest

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/ipvs"
)

// kernelHasScheduler reports whether the scheduler's module is loaded (the
// VM's /init loads every ip_vs_* module the kernel ships).
func kernelHasScheduler(name string) bool {
	_, err := os.Stat("/sys/module/ip_vs_" + name)
	return err == nil
}

// availableSchedulers are the schedulers of ipvs.Schedulers this kernel has.
func availableSchedulers() (have, missing []string) {
	for _, s := range ipvs.Schedulers {
		if kernelHasScheduler(s) {
			have = append(have, s)
		} else {
			missing = append(missing, s)
		}
	}
	return have, missing
}

// everything is a table with every scheduler the kernel has, the scheduler
// flags, persistence with netmasks, NAT/DR/TUN, fwmark services of both
// families, TCP/UDP/SCTP over IPv4 and IPv6, weights and thresholds.
func everything(schedulers []string) dataplane.Table {
	var entries []any
	for i, s := range schedulers {
		entries = append(entries, svc("tcp", "192.0.2.1:"+strconv.Itoa(1000+i), s),
			dest("10.1.0.1:80", "nat", 1), dest("10.1.0.2:80", "nat", 2))
	}
	sh := svc("tcp", "192.0.2.2:80", "sh")
	sh.Flags = []string{"sh-fallback", "sh-port"}
	mh := svc("udp", "192.0.2.2:53", "mh")
	mh.Flags = []string{"mh-fallback", "mh-port", "ops"}
	persist4 := svc("tcp", "192.0.2.3:443", "wlc")
	persist4.Timeout, persist4.Netmask = 300, 24
	allPorts := svc("tcp", "192.0.2.3:0", "rr")
	allPorts.Timeout = 600
	persist6 := svc("tcp", "[2001:db8::1]:443", "lc")
	persist6.Timeout, persist6.Netmask = 60, 64
	fw4 := dataplane.Service{Fwmark: 7, Family: "inet", Scheduler: "wlc", Flags: []string{"ops"}}
	fw6 := dataplane.Service{Fwmark: 8, Family: "inet6", Scheduler: "sed", Timeout: 30, Netmask: 48}
	thresh := dest("10.1.0.5:443", "nat", 10)
	thresh.UpperThreshold, thresh.LowerThreshold = 1000, 800
	thresh6 := dest("[2001:db8:1::5]:443", "dr", 3)
	thresh6.UpperThreshold, thresh6.LowerThreshold = 50, 0
	entries = append(entries,
		sh, dest("10.1.0.3:80", "dr", 1), dest("10.1.0.4:80", "dr", 1),
		mh, dest("10.1.0.3:53", "nat", 5), dest("10.1.0.4:5353", "nat", 0),
		persist4, thresh, dest("10.1.0.6:443", "tun", 65535),
		allPorts, dest("10.1.0.7:0", "dr", 1),
		persist6, thresh6, dest("[2001:db8:1::6]:8443", "nat", 1), dest("[2001:db8:1::7]:443", "tun", 1),
		svc("udp", "[2001:db8::1]:53", "rr"), dest("[2001:db8:1::8]:53", "nat", 1),
		svc("sctp", "192.0.2.4:3868", "rr"), dest("10.1.0.8:3868", "nat", 1),
		svc("sctp", "[2001:db8::2]:3868", "wrr"), dest("[2001:db8:1::9]:3868", "dr", 4),
		fw4, dest("10.1.0.9:0", "dr", 1), dest("10.1.0.10:8080", "nat", 2),
		fw6, dest("[2001:db8:1::10]:0", "tun", 7),
	)
	return table(entries...)
}

// TestProgramUpdateDelete programs everything, changes it and removes it,
// checking after each step that Dump, ipvsadm-save -n and ipvsadm -Ln
// (with --thresholds) all show exactly the intended table.
func TestProgramUpdateDelete(t *testing.T) {
	ns := "prog"
	b := backend(t, newNS(t, ns))
	have, missing := availableSchedulers()
	t.Logf("schedulers in this kernel: %v; missing: %v", have, missing)

	want := everything(have)
	applyAll(t, b, dataplane.Table{}, addChanges(want))
	requireKernelHas(t, b, ns, want)
	nsvc, ndest := want.Count()
	t.Logf("programmed %d services, %d destinations; Dump and ipvsadm agree", nsvc, ndest)

	// Updates: every kind of service and destination field.
	next := want.Clone()
	edit := func(key string, f func(*dataplane.VirtualService)) {
		vs, ok := next[key]
		if !ok {
			t.Fatalf("no service %s", key)
		}
		f(&vs)
		next[key] = vs
	}
	editDest := func(key, dk string, f func(*dataplane.Destination)) {
		edit(key, func(vs *dataplane.VirtualService) {
			d := vs.Dests[dk]
			f(&d)
			vs.Dests[dk] = d
		})
	}
	edit("tcp/192.0.2.1:1000", func(vs *dataplane.VirtualService) { vs.Scheduler = "wrr" })
	edit("tcp/192.0.2.2:80", func(vs *dataplane.VirtualService) {
		vs.Flags = []string{"sh-fallback"}
		vs.Timeout = 120 // becomes persistent
	})
	edit("udp/192.0.2.2:53", func(vs *dataplane.VirtualService) { vs.Flags = []string{"ops"} })
	edit("tcp/192.0.2.3:443", func(vs *dataplane.VirtualService) { vs.Timeout, vs.Netmask = 0, 0 }) // no longer persistent
	edit("tcp/[2001:db8::1]:443", func(vs *dataplane.VirtualService) { vs.Netmask = 56 })
	edit("fwmark/inet6/8", func(vs *dataplane.VirtualService) { vs.Timeout, vs.Netmask = 3600, 0 })
	editDest("tcp/192.0.2.3:443", "10.1.0.5:443", func(d *dataplane.Destination) {
		d.Weight, d.UpperThreshold, d.LowerThreshold = 0, 0, 0
	})
	editDest("tcp/192.0.2.3:443", "10.1.0.6:443", func(d *dataplane.Destination) { d.Forward = "nat" })
	editDest("tcp/[2001:db8::1]:443", "[2001:db8:1::5]:443", func(d *dataplane.Destination) {
		d.Forward, d.UpperThreshold, d.LowerThreshold = "tun", 70, 20
	})
	editDest("fwmark/inet/7", "10.1.0.9:0", func(d *dataplane.Destination) { d.Weight = 100 })
	changes := dataplane.Diff(want, next)
	for _, c := range changes {
		if c.Op != dataplane.UpdateService && c.Op != dataplane.UpdateDest {
			t.Fatalf("expected only updates, got %v", c)
		}
	}
	applyAll(t, b, want, changes)
	requireKernelHas(t, b, ns, next)
	t.Logf("%d updates applied", len(changes))

	// Deletions of destinations and of whole services (with theirs).
	last := next.Clone()
	delete(last["tcp/192.0.2.2:80"].Dests, "10.1.0.3:80")
	delete(last["fwmark/inet6/8"].Dests, "[2001:db8:1::10]:0")
	delete(last, "tcp/[2001:db8::1]:443")
	delete(last, "fwmark/inet/7")
	delete(last, "sctp/192.0.2.4:3868")
	changes = dataplane.Diff(next, last)
	applyAll(t, b, next, changes)
	requireKernelHas(t, b, ns, last)
	t.Logf("%d deletions applied", len(changes))

	applyAll(t, b, last, dataplane.Diff(last, dataplane.Table{}))
	requireKernelHas(t, b, ns, dataplane.Table{})
}

// TestMissingScheduler: a scheduler the kernel lacks (twos before Linux
// 6.2) fails with ENOENT and says which module to load.
func TestMissingScheduler(t *testing.T) {
	_, missing := availableSchedulers()
	var rel [3]int
	var uts syscall.Utsname
	syscall.Uname(&uts)
	release := utsString(uts.Release[:])
	for i, p := range strings.SplitN(release, ".", 3) {
		rel[i], _ = strconv.Atoi(strings.TrimFunc(p, func(r rune) bool { return r < '0' || r > '9' }))
	}
	old := rel[0] < 6 || rel[0] == 6 && rel[1] < 2
	if old && !slices.Equal(missing, []string{"twos"}) || !old && len(missing) > 0 {
		t.Fatalf("kernel %s lacks schedulers %v (expected only twos before 6.2)", release, missing)
	}
	if len(missing) == 0 {
		t.Skipf("kernel %s has every scheduler", release)
	}
	b := backend(t, newNS(t, "nosched"))
	errs := b.Apply(dataplane.Table{}, []dataplane.Change{{Op: dataplane.AddService, Service: svc("tcp", "192.0.2.9:80", "twos")}})
	if len(errs) != 1 || !errors.Is(errs[0].Err, syscall.ENOENT) || !strings.Contains(errs[0].Err.Error(), "load module ip_vs_twos") {
		t.Fatalf("want ENOENT naming ip_vs_twos, got %v", errs)
	}
	t.Logf("kernel %s: %v", release, errs[0])
}

// TestApplyIdempotent: adding what exists updates it, updating what is
// absent adds it, deleting what is absent succeeds; what is left as an
// error is what no retry can change without a new batch: a destination of
// a service neither the kernel, the cache nor the batch has (ESRCH), and a
// conversion error. A failed change does not stop the ones after it.
func TestApplyIdempotent(t *testing.T) {
	ns := "idem"
	b := backend(t, newNS(t, ns))
	s := svc("tcp", "192.0.2.10:80", "rr")
	other := svc("tcp", "192.0.2.11:80", "rr")
	d1, d2, d3, d4 := dest("10.1.1.1:80", "nat", 1), dest("10.1.1.2:80", "nat", 1), dest("10.1.1.3:80", "nat", 1), dest("10.1.1.4:80", "nat", 1)
	d1w := d1
	d1w.Weight = 2
	lc := s
	lc.Scheduler = "lc"
	bad := s
	bad.Flags = []string{"sh-port"} // not with rr: refused before the kernel
	changes := []dataplane.Change{
		{Op: dataplane.AddService, Service: s},
		{Op: dataplane.AddService, Service: lc},              // exists: updated (EEXIST, then SET)
		{Op: dataplane.AddDest, Service: lc, Dest: d1},       //
		{Op: dataplane.AddDest, Service: lc, Dest: d1w},      // exists: updated
		{Op: dataplane.AddDest, Service: other, Dest: d1},    // ESRCH: no service, in the cache or the batch
		{Op: dataplane.UpdateDest, Service: lc, Dest: d2},    // absent: added (ENOENT, then NEW)
		{Op: dataplane.DeleteDest, Service: lc, Dest: d3},    // absent: done
		{Op: dataplane.DeleteDest, Service: other, Dest: d1}, // no service: done
		{Op: dataplane.DeleteService, Service: other},        // absent: done
		{Op: dataplane.UpdateService, Service: bad},          // conversion error
		{Op: dataplane.AddDest, Service: lc, Dest: d4},       // still applied
	}
	errs := b.Apply(dataplane.Table{}, changes)
	want := []struct {
		index int
		errno error
	}{{4, syscall.ESRCH}, {9, nil}}
	if len(errs) != len(want) {
		t.Fatalf("want %d errors, got %d: %v", len(want), len(errs), errs)
	}
	for i, w := range want {
		e := errs[i]
		if e.Change.String() != changes[w.index].String() {
			t.Errorf("error %d is for %v, want %v", i, e.Change, changes[w.index])
		}
		if w.errno != nil && !errors.Is(e.Err, w.errno) {
			t.Errorf("%v: %v, want %v", e.Change, e.Err, w.errno)
		}
		t.Logf("%v", e)
	}
	requireKernelHas(t, b, ns, table(lc, d1w, d2, d4))
}

// TestTimeouts: SetTimeouts changes only the non-zero fields; ipvsadm -L
// --timeout agrees.
func TestTimeouts(t *testing.T) {
	ns := "timeouts"
	b := backend(t, newNS(t, ns))
	read := func() dataplane.Timeouts {
		t.Helper()
		to, err := ParseTimeouts(inNS(t, ns, "ipvsadm", "-L", "--timeout"))
		if err != nil {
			t.Fatal(err)
		}
		mine, err := b.Timeouts()
		if err != nil {
			t.Fatal(err)
		}
		if mine != to {
			t.Fatalf("Backend reads %+v, ipvsadm %+v", mine, to)
		}
		return to
	}
	start := read()
	t.Logf("kernel defaults: %+v", start)
	for _, step := range []struct{ set, want dataplane.Timeouts }{
		{dataplane.Timeouts{TCP: 7200}, dataplane.Timeouts{TCP: 7200, TCPFin: start.TCPFin, UDP: start.UDP}},
		{dataplane.Timeouts{TCPFin: 30, UDP: 45}, dataplane.Timeouts{TCP: 7200, TCPFin: 30, UDP: 45}},
		{dataplane.Timeouts{}, dataplane.Timeouts{TCP: 7200, TCPFin: 30, UDP: 45}},
		{dataplane.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}, dataplane.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}},
	} {
		if err := b.SetTimeouts(step.set); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != step.want {
			t.Fatalf("after SetTimeouts(%+v): %+v, want %+v", step.set, got, step.want)
		}
	}
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
