package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
)

// encodingVersion is the second byte of every entry: the version of the JSON
// body that follows. A director refuses bodies of a version it does not know.
const encodingVersion = 1

// Command is one typed change to the state.
type Command interface {
	Type() CommandType
}

// CreateService adds a service, optionally with its real servers.
type CreateService struct {
	Service ServiceSpec  `json:"service"`
	Reals   []RealServer `json:"reals,omitempty"`
}

// UpdateService replaces the spec of service Name (its real servers stay).
// CAS, when non-zero, must equal the service's modify_index.
type UpdateService struct {
	Name string      `json:"name"`
	Spec ServiceSpec `json:"spec"`
	CAS  uint64      `json:"cas,omitempty"`
}

// DeleteService removes a service and its real servers.
type DeleteService struct {
	Name string `json:"name"`
	CAS  uint64 `json:"cas,omitempty"`
}

// CreateReal adds a real server to a service.
type CreateReal struct {
	Service string     `json:"service"`
	Real    RealServer `json:"real"`
}

// UpdateReal replaces real server Key of a service. The address and port
// cannot change.
type UpdateReal struct {
	Service string     `json:"service"`
	Key     string     `json:"key"`
	Real    RealServer `json:"real"`
	CAS     uint64     `json:"cas,omitempty"`
}

// DeleteReal removes real server Key from a service.
type DeleteReal struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	CAS     uint64 `json:"cas,omitempty"`
}

// CreateVIP adds a VIP.
type CreateVIP struct {
	VIP VIP `json:"vip"`
}

// UpdateVIP replaces VIP Key (its address cannot change; its prefix length,
// interface and group can).
type UpdateVIP struct {
	Key string `json:"key"`
	VIP VIP    `json:"vip"`
	CAS uint64 `json:"cas,omitempty"`
}

// DeleteVIP removes VIP Key.
type DeleteVIP struct {
	Key string `json:"key"`
	CAS uint64 `json:"cas,omitempty"`
}

// UpdateSettings replaces the cluster settings.
type UpdateSettings struct {
	Settings Settings `json:"settings"`
	CAS      uint64   `json:"cas,omitempty"`
}

// RegisterNode records (or refreshes) a director's metadata.
type RegisterNode struct {
	Node Node `json:"node"`
}

// DeregisterNode forgets a director's metadata (after it left the cluster).
type DeregisterNode struct {
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

// newCommand returns a zero command of type t, or nil if t is unknown.
func newCommand(t CommandType) Command {
	switch t {
	case TypeCreateService:
		return &CreateService{}
	case TypeUpdateService:
		return &UpdateService{}
	case TypeDeleteService:
		return &DeleteService{}
	case TypeCreateReal:
		return &CreateReal{}
	case TypeUpdateReal:
		return &UpdateReal{}
	case TypeDeleteReal:
		return &DeleteReal{}
	case TypeCreateVIP:
		return &CreateVIP{}
	case TypeUpdateVIP:
		return &UpdateVIP{}
	case TypeDeleteVIP:
		return &DeleteVIP{}
	case TypeUpdateSettings:
		return &UpdateSettings{}
	case TypeRegisterNode:
		return &RegisterNode{}
	case TypeDeregisterNode:
		return &DeregisterNode{}
	}
	return nil
}

// ErrIgnorable is returned by Decode for an unknown command type that carries
// IgnorableFlag.
var ErrIgnorable = errors.New("unknown ignorable command type")

// Encode serialises a command: type byte, version byte, JSON body.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", c, err)
	}
	out := make([]byte, 0, 2+len(body))
	out = append(out, byte(c.Type()), encodingVersion)
	return append(out, body...), nil
}

// Decode parses an entry written by Encode. The result is a pointer to one of
// the command structs.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("command too short (%d bytes)", len(b))
	}
	t := CommandType(b[0])
	c := newCommand(t)
	if c == nil {
		if t&IgnorableFlag != 0 {
			return nil, fmt.Errorf("%w %d", ErrIgnorable, t)
		}
		return nil, fmt.Errorf("unknown command type %d", t)
	}
	if b[1] != encodingVersion {
		return nil, fmt.Errorf("command type %d: encoding version %d is not supported (this director knows %d)", t, b[1], encodingVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b[2:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("command type %d: %w", t, err)
	}
	return c, nil
}
