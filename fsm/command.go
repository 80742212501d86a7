package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/raftlb/raftlb/model"
)

// CommandType is the first byte of every raft log entry raftlb writes.
//
// Types with IgnorableFlag set may be skipped by a director that does not know
// them (a newer leader during a rolling upgrade); any other unknown type is an
// error that is logged loudly and changes nothing.
type CommandType uint8

// IgnorableFlag marks command types an older director may skip.
const IgnorableFlag CommandType = 0x80

// Command types. Never renumber: they are in every raft log on disk.
const (
	TypeCreateService  CommandType = 1
	TypeUpdateService  CommandType = 2
	TypeDeleteService  CommandType = 3
	TypeCreateReal     CommandType = 4
	TypeUpdateReal     CommandType = 5
	TypeDeleteReal     CommandType = 6
	TypeCreateVIP      CommandType = 7
	TypeUpdateVIP      CommandType = 8
	TypeDeleteVIP      CommandType = 9
	TypeUpdateSettings CommandType = 10
	TypeRegisterNode   CommandType = 11
	TypeDeregisterNode CommandType = 12
	TypeSetHealth      CommandType = 13
	// A director that does not know releases only waits for the lease to
	// run out (the safe default), so the type is ignorable.
	TypeReleaseLease CommandType = IgnorableFlag | 14
	// The cluster's id only labels it (identity files, status), so a
	// director that does not know the type may skip it.
	TypeInitCluster CommandType = IgnorableFlag | 15
)

// The second byte of every entry is the version of the JSON body that
// follows. Version 2 added health checking (service fields, SetHealth) and
// leadership preferences (node fields, ReleaseLease); version 3 dynamic
// weights (the weight of a health decision, Node.HealthWeights). Encode
// writes the lowest version that can carry the command, so directors that
// know only older versions keep applying everything else during a rolling
// upgrade; a director refuses bodies of a version it does not know. The
// leader writes version 3 only once every registered director declares
// HealthWeights (FSM.HealthWeights).
const (
	encodingV1 = 1
	encodingV2 = 2
	encodingV3 = 3
)

// anyWeight: a real server's health carries a dynamic weight (version 3).
func anyWeight(rs ...model.RealServer) bool {
	for _, r := range rs {
		if r.Health != nil && r.Health.Weight != nil {
			return true
		}
	}
	return false
}

// nodeNeedsV2: the director fields of encoding version 2 (leadership,
// gossip, checksums).
func nodeNeedsV2(n model.Node) bool {
	return n.Priority != 0 || n.PreemptDelay != "" || n.NoPreempt || n.Witness || n.Fault != "" || n.GossipAddr != "" || n.LogChecksums
}

// Command is one typed change to the state.
type Command interface {
	Type() CommandType
}

// CreateService adds a service, optionally with its real servers.
type CreateService struct {
	Service model.ServiceSpec  `json:"service"`
	Reals   []model.RealServer `json:"reals,omitempty"`
}

// UpdateService replaces the spec of service Name (its real servers stay).
// CAS, when non-zero, must equal the service's modify_index.
type UpdateService struct {
	Name string            `json:"name"`
	Spec model.ServiceSpec `json:"spec"`
	CAS  uint64            `json:"cas,omitempty"`
}

// DeleteService removes a service and its real servers.
type DeleteService struct {
	Name string `json:"name"`
	CAS  uint64 `json:"cas,omitempty"`
}

// CreateReal adds a real server to a service.
type CreateReal struct {
	Service string           `json:"service"`
	Real    model.RealServer `json:"real"`
}

// UpdateReal replaces real server Key of a service. The address and port
// cannot change.
type UpdateReal struct {
	Service string           `json:"service"`
	Key     string           `json:"key"`
	Real    model.RealServer `json:"real"`
	CAS     uint64           `json:"cas,omitempty"`
}

// DeleteReal removes real server Key from a service.
type DeleteReal struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	CAS     uint64 `json:"cas,omitempty"`
}

// CreateVIP adds a VIP.
type CreateVIP struct {
	VIP model.VIP `json:"vip"`
}

// UpdateVIP replaces VIP Key (its address cannot change; its prefix length,
// interface and group can).
type UpdateVIP struct {
	Key string    `json:"key"`
	VIP model.VIP `json:"vip"`
	CAS uint64    `json:"cas,omitempty"`
}

// DeleteVIP removes VIP Key.
type DeleteVIP struct {
	Key string `json:"key"`
	CAS uint64 `json:"cas,omitempty"`
}

// UpdateSettings replaces the cluster settings.
type UpdateSettings struct {
	Settings model.Settings `json:"settings"`
	CAS      uint64         `json:"cas,omitempty"`
}

// RegisterNode records (or refreshes) a director's metadata.
type RegisterNode struct {
	Node model.Node `json:"node"`
}

// DeregisterNode forgets a director's metadata (after it left the cluster).
type DeregisterNode struct {
	ID string `json:"id"`
}

// SetHealth commits the leader's health decisions, in a batch: only
// transitions. Changes naming a real server that is gone, or decided for a
// check spec that has changed since, are skipped (they raced with a write).
type SetHealth struct {
	Changes []HealthChange `json:"changes"`
}

// HealthChange is one real server's new health decision.
type HealthChange struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	Up      bool   `json:"up"`
	Reason  string `json:"reason,omitempty"`
	Check   string `json:"check,omitempty"` // model.Check.Hash of the check decided on; empty = any
	// Weight is the dynamic weight of a real server decided up (nil: the
	// configured weight; ignored with Up false). Encoding version 3.
	Weight *int `json:"weight,omitempty"`
}

// MaxHealthBatch bounds the changes of one SetHealth.
const MaxHealthBatch = 4096

// ReleaseLease records that the leader released the VIPs on purpose
// (planned handover), or with Cancel that it takes them back (a handover
// that did not happen). The raft term is taken from the log entry.
type ReleaseLease struct {
	Node   string `json:"node"`
	Cancel bool   `json:"cancel,omitempty"`
}

// InitCluster names the cluster, once: the first leader writes it; a
// later one changes nothing.
type InitCluster struct {
	ID string `json:"id"`
}

func (CreateService) Type() CommandType  { return TypeCreateService }
func (UpdateService) Type() CommandType  { return TypeUpdateService }
func (DeleteService) Type() CommandType  { return TypeDeleteService }
func (CreateReal) Type() CommandType     { return TypeCreateReal }
func (UpdateReal) Type() CommandType     { return TypeUpdateReal }
func (DeleteReal) Type() CommandType     { return TypeDeleteReal }
func (CreateVIP) Type() CommandType      { return TypeCreateVIP }
func (UpdateVIP) Type() CommandType      { return TypeUpdateVIP }
func (DeleteVIP) Type() CommandType      { return TypeDeleteVIP }
func (UpdateSettings) Type() CommandType { return TypeUpdateSettings }
func (RegisterNode) Type() CommandType   { return TypeRegisterNode }
func (DeregisterNode) Type() CommandType { return TypeDeregisterNode }
func (SetHealth) Type() CommandType      { return TypeSetHealth }
func (ReleaseLease) Type() CommandType   { return TypeReleaseLease }
func (InitCluster) Type() CommandType    { return TypeInitCluster }

// ErrIgnorable is returned by Decode for an unknown command type that carries
// IgnorableFlag.
var ErrIgnorable = errors.New("unknown ignorable command type")

// ErrCorrupt is returned (wrapped) by Decode for an entry whose checksum does
// not match its bytes, or that cannot be a command at all (too short,
// unknown type or encoding, a body that is not the command's JSON). A
// director that meets one stops applying (FSM.Failure): it never skips an
// entry the others applied.
var ErrCorrupt = errors.New("damaged or unreadable raft log entry")

// checksumFlag, set in the encoding-version byte, says that the entry ends
// with a CRC-32C (Castagnoli) of everything before it, big-endian. The
// version proper is the byte without the flag.
const checksumFlag = 0x40

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Encode serialises a command with a checksum: type byte, version byte, JSON
// body, CRC-32C. It is what a cluster of this release writes; FSM.Encode
// leaves the checksum out while a registered director cannot read it.
func Encode(c Command) ([]byte, error) { return encode(c, true) }

func encode(c Command, checksum bool) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", c, err)
	}
	ver := encodingVersion(c)
	if checksum {
		ver |= checksumFlag
	}
	out := make([]byte, 0, 2+len(body)+4)
	out = append(out, byte(c.Type()), ver)
	out = append(out, body...)
	if checksum {
		out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out, crc32c))
	}
	return out, nil
}

// Decode parses an entry written by Encode (or by an older release, without
// the checksum). The result is a pointer to one of the command structs.
// Every error but ErrIgnorable wraps ErrCorrupt.
func Decode(b []byte) (Command, error) {
	c, err := decode(b)
	if err != nil && !errors.Is(err, ErrIgnorable) {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return c, err
}

func decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("command too short (%d bytes)", len(b))
	}
	t, ver := CommandType(b[0]), b[1]
	body := b[2:]
	if ver&checksumFlag != 0 {
		if len(b) < 6 {
			return nil, fmt.Errorf("command type %d: %d bytes cannot hold a checksum", t, len(b))
		}
		n := len(b) - 4
		if want, got := binary.BigEndian.Uint32(b[n:]), crc32.Checksum(b[:n], crc32c); want != got {
			return nil, fmt.Errorf("command type %d: checksum mismatch (stored %08x, computed %08x over %d bytes)", t, want, got, n)
		}
		ver &^= checksumFlag
		body = b[2:n]
	}
	c := newCommand(t)
	if c == nil {
		if t&IgnorableFlag != 0 {
			return nil, fmt.Errorf("%w %d", ErrIgnorable, t)
		}
		return nil, fmt.Errorf("unknown command type %d (written by a newer raftlb? upgrade this director)", t)
	}
	if ver < encodingV1 || ver > encodingV3 {
		return nil, fmt.Errorf("command type %d: encoding version %d is not supported (this director knows %d to %d)", t, ver, encodingV1, encodingV3)
	}
	if err := jsonstrictDecode(body, c); err != nil {
		return nil, fmt.Errorf("command type %d: %w", t, err)
	}
	if v := encodingVersion(c); v > ver {
		return nil, fmt.Errorf("command type %d: fields of encoding version %d in a version %d body", t, v, ver)
	}
	return c, nil
}

// jsonstrictDecode decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func jsonstrictDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON body")
	}
	return nil
}
