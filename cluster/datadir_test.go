package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// usedDataDir runs a one-node cluster in a fresh data dir: bootstrap,
// count entries applied, optionally a snapshot, the identity recorded with
// cluster id "c1"; then it stops the node and returns its config.
func usedDataDir(t *testing.T, count int, snapshot bool, mod func(*Config)) Config {
	t.Helper()
	n := startNode(t, "solo", mod)
	if err := n.Bootstrap([]Server{{n.ID(), n.Addr()}}); err != nil {
		t.Fatal(err)
	}
	nodes := []*testNode{n}
	waitLeader(t, nodes)
	applyN(t, nodes, "e", count)
	if snapshot {
		if err := n.Raft().Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.RecordIdentity("c1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	return n.cfg
}

// refused asserts that New refuses the data dir with an error that
// contains every one of want.
func refused(t *testing.T, cfg Config, want ...string) {
	t.Helper()
	n, err := New(cfg, &listFSM{})
	if err == nil {
		_ = n.Shutdown()
		t.Fatalf("started on the data dir; want an error with %q", want)
	}
	if !errors.Is(err, ErrDataDir) {
		t.Fatalf("error does not wrap ErrDataDir: %v", err)
	}
	for _, w := range append(want, "-join", "docs/operations.md") {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not say %q", err, w)
		}
	}
}

func TestIdentityIsRecordedAndKept(t *testing.T) {
	cfg := usedDataDir(t, 3, false, nil)
	id, err := ReadIdentity(cfg.DataDir)
	if err != nil || id == nil || id.NodeID != "solo" || id.ClusterID != "c1" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	n := startNodeWith(t, cfg)
	if err := n.RecordIdentity("c2"); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("another cluster's id: %v", err)
	}
	if got := n.Identity(); got == nil || got.ClusterID != "c1" {
		t.Fatalf("identity after a mismatch: %+v", got)
	}
}

// TestRefusesALostRaftDB: a data dir that was part of a cluster and lost
// raft.db (deleted, emptied, or lost beside a surviving snapshot) must not
// start as a brand-new node: it would bootstrap again or vote twice.
func TestRefusesALostRaftDB(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snapshot bool
		damage   func(db string) error
	}{
		{"deleted", false, os.Remove},
		{"emptied", false, func(db string) error { return os.Truncate(db, 0) }},
		{"deleted beside a snapshot", true, os.Remove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := usedDataDir(t, 3, tc.snapshot, nil)
			if err := tc.damage(filepath.Join(cfg.DataDir, "raft.db")); err != nil {
				t.Fatal(err)
			}
			refused(t, cfg, "no term or vote", IdentityFile, "solo")
		})
	}
}

func TestRefusesAnotherNodesDataDir(t *testing.T) {
	cfg := usedDataDir(t, 1, false, nil)
	cfg.NodeID = "other"
	_, err := New(cfg, &listFSM{})
	if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), `belongs to director "solo"`) {
		t.Fatalf("another node's data dir: %v", err)
	}
}

// TestAdoptsADataDirWithoutIdentity: a data dir of a release before the
// identity file starts and gets one.
func TestAdoptsADataDirWithoutIdentity(t *testing.T) {
	cfg := usedDataDir(t, 2, false, nil)
	if err := os.Remove(filepath.Join(cfg.DataDir, IdentityFile)); err != nil {
		t.Fatal(err)
	}
	n := startNodeWith(t, cfg)
	if !n.HasExistingState() {
		t.Fatal("state lost")
	}
	if id, err := ReadIdentity(cfg.DataDir); err != nil || id == nil || id.NodeID != "solo" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	// And without identity, a snapshot without raft.db is refused too.
	cfg2 := usedDataDir(t, 2, true, nil)
	for _, f := range []string{IdentityFile, "raft.db"} {
		if err := os.Remove(filepath.Join(cfg2.DataDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	refused(t, cfg2, "stable store was lost", "1 snapshot")
}

func snapshotDirs(t *testing.T, dataDir string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dataDir, "snapshots", "*-*-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no snapshot in %s: %v", dataDir, err)
	}
	return dirs
}

// TestDamagedSnapshot: a snapshot whose meta or state is damaged is fatal
// when the log no longer holds what it covered, and harmless when it does.
func TestDamagedSnapshot(t *testing.T) {
	damages := map[string]func(dir string) error{
		"garbage meta.json": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "meta.json"), []byte("{garbage"), 0o600)
		},
		"state.bin changed": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "state.bin"), []byte(`["x"]`+"\n"), 0o600)
		},
	}
	for name, damage := range damages {
		t.Run(name+", log compacted", func(t *testing.T) {
			cfg := usedDataDir(t, 20, true, func(c *Config) { c.TrailingLogs = 1 })
			if err := damage(snapshotDirs(t, cfg.DataDir)[0]); err != nil {
				t.Fatal(err)
			}
			refused(t, cfg, "is damaged", "snapshots")
		})
		t.Run(name+", log covers it", func(t *testing.T) {
			cfg := usedDataDir(t, 20, true, func(c *Config) { c.TrailingLogs = 1000 })
			if err := damage(snapshotDirs(t, cfg.DataDir)[0]); err != nil {
				t.Fatal(err)
			}
			n := startNodeWith(t, cfg)
			waitLeader(t, []*testNode{n})
			eventually(t, "the log replayed", func() error {
				if got := len(n.fsm.list()); got < 20 {
					return fmt.Errorf("%d entries", got)
				}
				return nil
			})
		})
	}
}

// TestDamagedBoltPage: a damaged page of raft.db is an error that names
// the file and the recovery, not a bbolt assertion panic.
func TestDamagedBoltPage(t *testing.T) {
	cfg := usedDataDir(t, 50, false, nil)
	db := filepath.Join(cfg.DataDir, "raft.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	for off := 2 * page; off+8 <= len(b); off += page { // every page but the two meta pages says it is another page
		binary.LittleEndian.PutUint64(b[off:], binary.LittleEndian.Uint64(b[off:])+7)
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, cfg, db, "damaged")
}

func TestCheckDataDir(t *testing.T) {
	id := &Identity{NodeID: "d1"}
	good := func(i uint64) snapInfo { return snapInfo{Dir: fmt.Sprintf("s%d", i), Index: i} }
	bad := func(i uint64) snapInfo { return snapInfo{Dir: fmt.Sprintf("s%d", i), Index: i, Damage: "bad"} }
	for _, tc := range []struct {
		name string
		d    dataDirFacts
		want string // "" = accepted
	}{
		{"new", dataDirFacts{NodeID: "d1"}, ""},
		{"running", dataDirFacts{NodeID: "d1", Identity: id, Term: 3, First: 1, Last: 9}, ""},
		{"identity, no term", dataDirFacts{NodeID: "d1", Identity: id}, "no term or vote"},
		{"other node", dataDirFacts{NodeID: "d2", Identity: id, Term: 3}, "belongs to"},
		{"no identity, snapshot, no term", dataDirFacts{NodeID: "d1", Snapshots: []snapInfo{good(5)}}, "stable store was lost"},
		{"compacted behind a snapshot", dataDirFacts{NodeID: "d1", Term: 2, First: 4, Last: 9, Snapshots: []snapInfo{good(5)}}, ""},
		{"log gap after the snapshot", dataDirFacts{NodeID: "d1", Term: 2, First: 8, Last: 9, Snapshots: []snapInfo{good(5)}}, "entries 6-7 are nowhere"},
		{"no snapshot, compacted log", dataDirFacts{NodeID: "d1", Term: 2, First: 8, Last: 9}, "entries 1-7 are nowhere"},
		{"damaged newest, log covers from older", dataDirFacts{NodeID: "d1", Term: 2, First: 3, Last: 20, Snapshots: []snapInfo{bad(15), good(5)}}, ""},
		{"damaged newest, log starts late", dataDirFacts{NodeID: "d1", Term: 2, First: 10, Last: 20, Snapshots: []snapInfo{bad(15), good(5)}}, "s15 is damaged"},
		{"damaged only, log from 1", dataDirFacts{NodeID: "d1", Term: 2, First: 1, Last: 20, Snapshots: []snapInfo{bad(15)}}, ""},
		{"damaged only, log short", dataDirFacts{NodeID: "d1", Term: 2, First: 1, Last: 10, Snapshots: []snapInfo{bad(15)}}, "held the state up to index 15"},
		{"damaged older than the good one", dataDirFacts{NodeID: "d1", Term: 2, First: 16, Last: 20, Snapshots: []snapInfo{good(15), bad(5)}}, ""},
	} {
		err := checkDataDir(tc.d)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
