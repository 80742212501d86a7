package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// This file decides, before raft runs, whether a data dir can be trusted:
// raft.db must be readable to its last entry, a data dir that was part of a
// cluster must still hold its term and vote, and the snapshots and the log
// together must cover the whole state. A director refuses to start rather
// than serve a partial state or vote as a brand-new node.

// IdentityFile, in DataDir, marks the data dir as having been part of a
// cluster: it is written once the node has raft state and never removed by
// raftlb. With it, a missing or empty raft.db is an error, not a new node.
const IdentityFile = "identity.json"

// Identity is the content of IdentityFile.
type Identity struct {
	NodeID    string    `json:"node_id"`
	ClusterID string    `json:"cluster_id,omitempty"` // filled in once the replicated state names it
	Created   time.Time `json:"created"`
}

// RecoveryHint is the recovery for a data dir that cannot be used.
const RecoveryHint = "the other directors hold the cluster's state: remove this director from the cluster " +
	"(raftlb cluster remove <id>), move its data dir away, and start it again with -join so that it gets a fresh copy " +
	"(docs/operations.md, \"A damaged data dir\")"

// keyCurrentTerm is the stable-store key hashicorp/raft keeps its current
// term under (unexported there; part of every raft.db on disk).
var keyCurrentTerm = []byte("CurrentTerm")

// ErrClusterMismatch is returned by RecordIdentity when the replicated
// state names another cluster than the one the data dir was part of.
var ErrClusterMismatch = errors.New("cluster: the data dir belongs to another cluster")

// ErrDataDir is wrapped by every error of New that refuses a data dir.
var ErrDataDir = errors.New("cluster: the data dir cannot be used")

func dataDirErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s; %s", ErrDataDir, fmt.Sprintf(format, args...), RecoveryHint)
}

// ReadIdentity reads dir's identity file; (nil, nil) when there is none.
func ReadIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrDataDir, path, err)
	}
	var id Identity
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil || id.NodeID == "" {
		return nil, dataDirErr("%s is damaged (%v)", path, errOr(err, "no node_id"))
	}
	return &id, nil
}

func errOr(err error, msg string) any {
	if err != nil {
		return err
	}
	return msg
}

// writeIdentity writes id to dir atomically (temporary file, fsync, rename).
func writeIdentity(dir string, id Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, IdentityFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("cluster: write %s: %w", path, err)
	}
	return nil
}

// snapInfo is what the pre-start check learns of one snapshot directory.
type snapInfo struct {
	Dir    string
	Index  uint64 // from meta.json, or from the directory name when the meta is damaged
	Damage string // "" = usable
}

// dataDirFacts is everything checkDataDir decides on.
type dataDirFacts struct {
	NodeID      string    // this node's configured id
	Identity    *Identity // nil: no identity file
	Term        uint64    // CurrentTerm in the stable store (0: none)
	First, Last uint64    // log index range (0, 0: empty log)
	Snapshots   []snapInfo
}

// checkDataDir is the pure decision: nil if raft may start on this data
// dir, else an error that says what is wrong and what to do.
func checkDataDir(d dataDirFacts) error {
	if id := d.Identity; id != nil {
		if id.NodeID != d.NodeID {
			return fmt.Errorf("%w: it belongs to director %q (%s), not %q: give -node-id %s, or a data dir of its own to a new director",
				ErrDataDir, id.NodeID, IdentityFile, d.NodeID, id.NodeID)
		}
		if d.Term == 0 {
			return dataDirErr("director %s was part of cluster %s (%s) but raft.db holds no term or vote (missing, emptied or replaced); "+
				"starting would bootstrap or vote again as a brand-new node", id.NodeID, orUnknown(id.ClusterID), IdentityFile)
		}
	} else if d.Term == 0 && (d.Last > 0 || len(d.Snapshots) > 0) {
		return dataDirErr("raft.db holds no term or vote but the data dir has %s: the stable store was lost, and this director would forget its vote",
			describeLeftovers(d))
	}
	// raft restores the newest usable snapshot (skipping damaged ones)
	// and then needs every log entry after it; a damaged snapshot newer
	// than that must be reached by the log too, or its state is lost.
	var good, bad *snapInfo
	for i := range d.Snapshots { // newest first
		s := &d.Snapshots[i]
		switch {
		case s.Damage != "" && bad == nil:
			bad = s
		case s.Damage == "" && good == nil:
			good = s
		}
	}
	base, from := uint64(0), "no usable snapshot"
	if good != nil {
		base, from = good.Index, fmt.Sprintf("the newest usable snapshot %s ends at index %d", good.Dir, good.Index)
	}
	if d.Last > 0 && d.First > base+1 {
		what := "the log starts after it"
		if bad != nil {
			what = fmt.Sprintf("snapshot %s is damaged (%s)", bad.Dir, bad.Damage)
		}
		return dataDirErr("%s: %s and the log holds indexes %d-%d, so entries %d-%d are nowhere", what, from, d.First, d.Last, base+1, d.First-1)
	}
	if bad != nil && max(base, d.Last) < bad.Index {
		return dataDirErr("snapshot %s is damaged (%s): it held the state up to index %d, but %s and the log ends at %d",
			bad.Dir, bad.Damage, bad.Index, from, d.Last)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "(id not yet known)"
	}
	return s
}

func describeLeftovers(d dataDirFacts) string {
	var parts []string
	if d.Last > 0 {
		parts = append(parts, fmt.Sprintf("log entries %d-%d", d.First, d.Last))
	}
	if n := len(d.Snapshots); n > 0 {
		parts = append(parts, fmt.Sprintf("%d snapshot(s)", n))
	}
	return strings.Join(parts, " and ")
}

// scanSnapshots reads every snapshot in dir/snapshots the way raft's
// FileSnapshotStore would use it (meta.json, the CRC-64 of state.bin), newest
// first. raft itself skips a snapshot whose meta it cannot read and falls
// back to an older one; the caller decides whether that is still whole.
func scanSnapshots(dataDir string) ([]snapInfo, error) {
	root := filepath.Join(dataDir, "snapshots")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: read %s: %w", root, err)
	}
	type dated struct {
		snapInfo
		term uint64
	}
	var out []dated
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		s := dated{snapInfo: snapInfo{Dir: filepath.Join(root, e.Name())}}
		// The name is term-index-milliseconds.
		if parts := strings.Split(e.Name(), "-"); len(parts) == 3 {
			s.term, _ = strconv.ParseUint(parts[0], 10, 64)
			s.Index, _ = strconv.ParseUint(parts[1], 10, 64)
		}
		s.Damage = checkSnapshot(s.Dir, &s.snapInfo, &s.term)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].term != out[j].term {
			return out[i].term > out[j].term
		}
		return out[i].Index > out[j].Index
	})
	infos := make([]snapInfo, len(out))
	for i := range out {
		infos[i] = out[i].snapInfo
	}
	return infos, nil
}

// checkSnapshot returns why the snapshot in dir cannot be used ("" if it
// can), taking its index and term from meta.json when that is readable.
func checkSnapshot(dir string, s *snapInfo, term *uint64) string {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return "meta.json: " + err.Error()
	}
	var meta struct {
		Version raft.SnapshotVersion
		Index   uint64
		Term    uint64
		Size    int64
		CRC     []byte
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return "meta.json is not valid: " + err.Error()
	}
	if meta.Version < raft.SnapshotVersionMin || meta.Version > raft.SnapshotVersionMax || meta.Index == 0 {
		return fmt.Sprintf("meta.json: version %d, index %d", meta.Version, meta.Index)
	}
	s.Index, *term = meta.Index, meta.Term
	f, err := os.Open(filepath.Join(dir, "state.bin"))
	if err != nil {
		return "state.bin: " + err.Error()
	}
	defer f.Close()
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, f)
	if err != nil {
		return "state.bin: " + err.Error()
	}
	if !bytes.Equal(h.Sum(nil), meta.CRC) {
		return fmt.Sprintf("state.bin does not match the checksum in meta.json (%d bytes, %d recorded)", n, meta.Size)
	}
	return ""
}

// skipDamaged is raft's snapshot store without the snapshots the pre-start
// check found damaged (checkDataDir has made sure the log covers them):
// raft would otherwise fail on one it cannot open when no older one is
// left. The damaged directory stays on disk for inspection.
type skipDamaged struct {
	raft.SnapshotStore
	skip map[string]bool // snapshot ids (directory names)
}

func (s skipDamaged) List() ([]*raft.SnapshotMeta, error) {
	all, err := s.SnapshotStore.List()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, m := range all {
		if !s.skip[m.ID] {
			out = append(out, m)
		}
	}
	return out, nil
}

// checkBolt opens raft.db read-only and reads every key and value of every
// bucket, so that a damaged page shows here, with the file named, rather
// than as a panic deep in raft later. bbolt panics on some damage
// (assertions); that is turned into an error too.
func checkBolt(path string) (err error) {
	if st, err := os.Stat(path); errors.Is(err, os.ErrNotExist) || err == nil && st.Size() == 0 {
		return nil // a new (or emptied) store: bbolt initialises it
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(_, _ []byte) error { return nil })
		})
	})
}

// openStore opens raft.db, with bbolt's panics on a damaged file turned
// into errors.
func openStore(path string) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			store, err = nil, fmt.Errorf("%v", r)
		}
	}()
	opts := *bbolt.DefaultOptions
	opts.Timeout = boltOpenTimeout
	return raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &opts})
}

// readLogs decodes every entry of the log, so that a damaged or missing
// entry is found before raft relies on it.
func readLogs(store raft.LogStore) (first, last uint64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	if first, err = store.FirstIndex(); err != nil {
		return 0, 0, err
	}
	if last, err = store.LastIndex(); err != nil {
		return 0, 0, err
	}
	if last == 0 {
		return 0, 0, nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := store.GetLog(i, &l); err != nil {
			return first, last, fmt.Errorf("log entry %d: %w", i, err)
		}
	}
	return first, last, nil
}

// RecordIdentity keeps the identity file up to date: it is written once the
// node has raft state (a term), and gets the cluster's id once the
// replicated state names it (clusterID "" = not yet known). It returns
// ErrClusterMismatch when the file names another cluster: this data dir was
// part of that one and must not serve this one. Cheap when nothing changes.
func (n *Node) RecordIdentity(clusterID string) error {
	n.identityMu.Lock()
	defer n.identityMu.Unlock()
	id := n.identity
	switch {
	case id != nil && id.ClusterID != "" && clusterID != "" && id.ClusterID != clusterID:
		return fmt.Errorf("%w: %s names cluster %s, but the cluster this director talks to is %s", ErrClusterMismatch,
			filepath.Join(n.dataDir, IdentityFile), id.ClusterID, clusterID)
	case id != nil && (clusterID == "" || id.ClusterID == clusterID):
		return nil
	case id == nil && n.raft.CurrentTerm() == 0:
		return nil // not part of a cluster yet
	}
	next := Identity{NodeID: n.id, ClusterID: clusterID, Created: time.Now().UTC()}
	if id != nil {
		next.Created = id.Created
	}
	if err := writeIdentity(n.dataDir, next); err != nil {
		return err
	}
	n.identity = &next
	return nil
}

// Identity returns the data dir's identity, nil until it has one.
func (n *Node) Identity() *Identity {
	n.identityMu.Lock()
	defer n.identityMu.Unlock()
	if n.identity == nil {
		return nil
	}
	c := *n.identity
	return &c
}
