//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/model"
)

// TestAgentProgramsIPVS runs the real `raftlb agent` (-dataplane ipvs) in a
// namespace, configures it with the real CLI, and checks with ipvsadm —
// a reader nobody here wrote — that the kernel holds exactly the replicated
// state; then that drift (ipvsadm -C) is repaired by the resync, and that
// drain and delete reach the kernel.
func TestAgentProgramsIPVS(t *testing.T) {
	const ns = "agent"
	newNS(t, ns)
	logf, err := os.CreateTemp("", "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command("ip", "netns", "exec", ns, "/bin/raftlb", "agent", "-dev", "-dataplane", "ipvs", "-resync", "1s")
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		_, _ = agent.Process.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("agent log:\n%s", b)
		}
	})
	cli := func(args ...string) string {
		t.Helper()
		return inNS(t, ns, "/bin/raftlb", args...)
	}
	eventually(t, 20*time.Second, func() error {
		_, err := exec.Command("ip", "netns", "exec", ns, "/bin/raftlb", "status").CombinedOutput()
		return err
	})

	cli("service", "add", "web", "-t", "10.0.0.100:80", "-s", "wlc", "-p", "300", "-M", "24")
	cli("real", "add", "web", "10.0.1.1:8080", "-w", "3", "-x", "100", "-y", "10")
	cli("real", "add", "web", "10.0.1.2:8080", "-w", "1")
	cli("service", "add", "dns", "-u", "10.0.0.100:53", "-s", "sh", "-b", "sh-port,sh-fallback")
	cli("real", "add", "dns", "10.0.1.3", "-g")
	cli("service", "add", "v6", "-t", "[2001:db8::100]:443", "-s", "mh", "-b", "mh-port")
	cli("real", "add", "v6", "[2001:db8:1::1]:443", "-i", "-w", "7")
	cli("service", "add", "mark", "-f", "7", "-s", "rr")
	cli("real", "add", "mark", "10.0.1.4:0", "-w", "2")
	cli("service", "add", "sctp", "-sctp", "10.0.0.100:9000", "-s", "lc")
	cli("real", "add", "sctp", "10.0.1.5:9000", "-state", "disabled")

	// The replicated state, read back through the API, is what the kernel
	// must hold.
	want := func() dataplane.Table {
		t.Helper()
		var svcs []model.Service
		if err := json.Unmarshal([]byte(cli("service", "list", "-o", "json")), &svcs); err != nil {
			t.Fatal(err)
		}
		tab, _ := dataplane.FromFSM(svcs)
		return tab
	}
	kernelEquals := func(w dataplane.Table) error {
		save, list := ipvsadmTable(t, ns)
		for name, got := range map[string]dataplane.Table{"ipvsadm-save -n": save, "ipvsadm -Ln": list} {
			if d := DiffTables(w, got); d != "" {
				return fmt.Errorf("%s differs from the replicated state:\n%s", name, d)
			}
		}
		return nil
	}
	w := want()
	if n, d := w.Count(); n != 5 || d != 5 { // the disabled real server is not programmed
		t.Fatalf("replicated state has %d services, %d destinations", n, d)
	}
	eventually(t, 10*time.Second, func() error { return kernelEquals(w) })

	// Drift: an operator flushes IPVS behind raftlb's back.
	inNS(t, ns, "ipvsadm", "-C")
	eventually(t, 10*time.Second, func() error { return kernelEquals(w) })
	var st struct {
		Dataplane struct {
			Backend      string `json:"backend"`
			DriftRepairs int    `json:"drift_repairs"`
		} `json:"dataplane"`
	}
	if err := json.Unmarshal([]byte(cli("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Dataplane.Backend != "ipvs" || st.Dataplane.DriftRepairs < 1 {
		t.Fatalf("status dataplane %+v", st.Dataplane)
	}

	// Drain is weight 0 in the kernel; delete removes the service.
	cli("real", "drain", "web", "10.0.1.2:8080")
	cli("service", "delete", "mark")
	w = want()
	if _, ok := w["fwmark/inet/7"]; ok {
		t.Fatal("deleted service still replicated")
	}
	eventually(t, 10*time.Second, func() error { return kernelEquals(w) })
	if out := inNS(t, ns, "ipvsadm", "-Ln"); !strings.Contains(out, "10.0.1.2:8080") {
		t.Fatalf("drained real server vanished:\n%s", out)
	}
}
