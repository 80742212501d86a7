//go:build vmguest

package guest

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/ipvs"
)

var benchFlag = flag.Bool("ipvs.bench", false, "run TestBenchmark (1k, 10k, 100k destinations)")

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("RAFTLB_VM_GUEST") != "1" {
		fmt.Println("skip: these tests change IPVS and network namespaces; they run only inside the VM (integration/vm/run.sh)")
		os.Exit(0)
	}
	rc := m.Run()
	topo.teardown()
	os.Exit(rc)
}

// run runs a command and returns its output; a failure fails the test.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command in the named network namespace.
func inNS(t testing.TB, ns, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// newNS creates a network namespace that the test removes at its end
// (and with it the namespace's IPVS table), and returns its path.
func newNS(t testing.TB, name string) string {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return "/run/netns/" + name
}

// backend opens an ipvs Backend in the namespace at path.
func backend(t testing.TB, path string) *ipvs.Backend {
	t.Helper()
	b, err := ipvs.NewInNamespace(path)
	if err != nil {
		t.Fatalf("ipvs backend in %s: %v", path, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// ipvsadmTable reads a namespace's IPVS table twice, independently of the
// Backend: with ipvsadm-save -n and with ipvsadm -Ln, each completed with
// the thresholds from ipvsadm -Ln --thresholds.
func ipvsadmTable(t testing.TB, ns string) (save, list dataplane.Table) {
	t.Helper()
	th, err := ParseThresholds(inNS(t, ns, "ipvsadm", "-Ln", "--thresholds"))
	if err != nil {
		t.Fatal(err)
	}
	save, err = ParseSave(inNS(t, ns, "sh", "/usr/sbin/ipvsadm-save", "-n"))
	if err != nil {
		t.Fatal(err)
	}
	list, err = ParseList(inNS(t, ns, "ipvsadm", "-Ln"))
	if err != nil {
		t.Fatal(err)
	}
	return WithThresholds(save, th), WithThresholds(list, th)
}

// requireKernelHas checks that the Backend's Dump and both ipvsadm views
// of the namespace equal want.
func requireKernelHas(t testing.TB, b *ipvs.Backend, ns string, want dataplane.Table) {
	t.Helper()
	dump, err := b.Dump()
	if err != nil {
		t.Fatal(err)
	}
	save, list := ipvsadmTable(t, ns)
	for name, got := range map[string]dataplane.Table{"Dump": dump, "ipvsadm-save -n": save, "ipvsadm -Ln": list} {
		if d := DiffTables(want, got); d != "" {
			t.Errorf("%s differs from what was applied:\n%s", name, d)
		}
	}
	if t.Failed() {
		t.Logf("ipvsadm -Ln:\n%s", inNS(t, ns, "ipvsadm", "-Ln"))
		t.FailNow()
	}
}

// applyAll applies changes to what from says b holds (the reconciler's
// cache) and fails the test on any error.
func applyAll(t testing.TB, b dataplane.Backend, from dataplane.Table, changes []dataplane.Change) {
	t.Helper()
	if errs := b.Apply(from, changes); len(errs) > 0 {
		for _, e := range errs {
			t.Errorf("apply: %v", e)
		}
		t.FailNow()
	}
}

// addChanges returns the changes that program t from empty: services
// first, then destinations.
func addChanges(t dataplane.Table) []dataplane.Change {
	return dataplane.Diff(dataplane.Table{}, t)
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

var mustAddr = netip.MustParseAddr

// svc and dest build table entries tersely.
func svc(proto, addrPort, sched string) dataplane.Service {
	ap := netip.MustParseAddrPort(addrPort)
	return dataplane.Service{Protocol: proto, Address: ap.Addr(), Port: ap.Port(), Family: family(ap.Addr()), Scheduler: sched}
}

func dest(addrPort, fwd string, weight int) dataplane.Destination {
	ap := netip.MustParseAddrPort(addrPort)
	return dataplane.Destination{Address: ap.Addr(), Port: ap.Port(), Forward: fwd, Weight: weight}
}

// table builds a Table from services and their destinations.
func table(entries ...any) dataplane.Table {
	t := dataplane.Table{}
	var cur string
	for _, e := range entries {
		switch v := e.(type) {
		case dataplane.Service:
			cur = v.Key()
			t[cur] = dataplane.VirtualService{Service: v, Dests: map[string]dataplane.Destination{}}
		case dataplane.Destination:
			t[cur].Dests[v.Key()] = v
		}
	}
	return t
}
