package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

// TestFlippedByteInRaftDBStopsTheDirector: one byte flipped inside a
// committed entry of one follower's raft.db (a letter of a service name: the
// JSON stays valid, only the checksum can tell) makes that director stop at
// that index, say so, leave raft and refuse to serve, instead of skipping
// the entry and serving a state the others do not have. It stays stopped
// across a restart, and the rest of the cluster goes on.
func TestFlippedByteInRaftDBStopsTheDirector(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	for _, d := range tc.dirs {
		d.cfg.SnapshotThreshold = 1 << 20 // the entry must stay in the log, not in a snapshot
	}
	tc.startAll()
	ld := tc.leader()
	const name = "canary-flipped-byte"
	idx := addService(t, tc.client(ld), name, 80)
	tc.converge(idx)
	f := tc.follower()
	dataDir := tc.dirs[f].cfg.DataDir
	tc.kill(f)

	db := filepath.Join(dataDir, "raft.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	n := bytes.Count(b, []byte(name))
	if n == 0 {
		t.Fatalf("%s not found in %s", name, db)
	}
	b = bytes.ReplaceAll(b, []byte(name), []byte(strings.Replace(name, "canary", "canarz", 1)))
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for round := range 2 { // and again after a restart: the failure is not forgotten
		tc.start(f)
		a := tc.dirs[f].a
		waitFor(t, "the damaged director stops", func() bool { return a.fsm.Failure() != nil })
		fl := a.fsm.Failure()
		if fl.Index != idx || !strings.Contains(fl.Err, "checksum mismatch") {
			t.Fatalf("round %d: failure %+v, want index %d and a checksum mismatch", round, fl, idx)
		}
		if _, ok := a.fsm.Service(name); ok {
			t.Fatal("the service of the damaged entry was applied")
		}
		if _, ok := a.fsm.Service(strings.Replace(name, "canary", "canarz", 1)); ok {
			t.Fatal("the damaged entry was applied as it reads now")
		}
		waitFor(t, "it leaves raft", func() bool { return a.node.Status().State == "shutdown" })

		// Not ready, with the index; reads and writes refused; status says why.
		resp, err := http.Get(a.APIURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "index") {
			t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
		}
		c := tc.client(f)
		if _, _, err := c.Services(context.Background(), client.ReadOpts{}); !client.IsCode(err, wire.CodeStopped) {
			t.Fatalf("read from a stopped director: %v", err)
		}
		st, err := c.Status(context.Background())
		if err != nil || st.Stopped == nil || st.Stopped.Index != idx {
			t.Fatalf("status: %+v %v", st.Stopped, err)
		}
		// The others keep the cluster: a write commits without it.
		for i := range tc.dirs {
			if i != f {
				addService(t, tc.client(i), fmt.Sprintf("after-%d", round), 81+round)
				break
			}
		}
		if a.node.IsLeader() {
			t.Fatal("the damaged director leads")
		}
		tc.kill(f)
	}
	if !strings.Contains(fsm.Recovery, "-join") {
		t.Fatal("the recovery hint does not say how to rejoin")
	}
}

// TestClusterIDAndIdentity: the first leader names the cluster, and every
// director's data dir records that name and its own id.
func TestClusterIDAndIdentity(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.startAll()
	var id string
	waitFor(t, "the cluster is named", func() bool {
		id = tc.dirs[tc.leader()].a.fsm.ClusterID()
		return id != ""
	})
	for _, d := range tc.dirs {
		waitFor(t, d.cfg.NodeID+" records its identity", func() bool {
			got, err := cluster.ReadIdentity(d.cfg.DataDir)
			return err == nil && got != nil && got.ClusterID == id && got.NodeID == d.cfg.NodeID
		})
		st, err := tc.client(0).Status(context.Background())
		if err != nil || st.ClusterID != id {
			t.Fatalf("status cluster_id %q, %v; want %q", st.ClusterID, err, id)
		}
	}
}
