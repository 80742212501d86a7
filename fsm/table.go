package fsm

import (
	"fmt"

	"github.com/raftlb/raftlb/model"
)

// The command table: every command type is registered once, with what it
// takes to decode it, apply it, tell which service it changed and choose
// its encoding version. Decode, Apply, ServicesChangedSince and Encode read
// the table; a new command is one entry (and its handler).

// commandDef is one registered command type.
type commandDef struct {
	new func() Command
	// apply changes the state at index idx (state unchanged on error).
	apply func(s *state, idx uint64, c Command) (any, *model.Error)
	// track records what a successful apply changed for readers that
	// follow changes (service touched, service deleted); may be nil.
	track func(s *state, idx uint64, c Command)
	// version is the lowest body encoding that carries the command (1, 2
	// or 3); nil: always 1.
	version func(c Command) byte
}

var commands = map[CommandType]commandDef{}

// register adds command type P (a pointer to the command struct T) to the
// table. The handlers see the command as P, however it was passed.
func register[T any, P interface {
	*T
	Command
}](apply func(*state, uint64, P) (any, *model.Error), track func(*state, uint64, P), version func(P) byte) {
	as := func(c Command) P {
		switch v := c.(type) {
		case P:
			return v
		case T: // a command passed by value (Encode(CreateVIP{...}))
			return &v
		}
		panic(fmt.Sprintf("fsm: command %T registered as %T", c, P(nil)))
	}
	t := P(new(T)).Type()
	if _, dup := commands[t]; dup {
		panic(fmt.Sprintf("fsm: command type %d registered twice", t))
	}
	d := commandDef{
		new:   func() Command { return P(new(T)) },
		apply: func(s *state, idx uint64, c Command) (any, *model.Error) { return apply(s, idx, as(c)) },
	}
	if track != nil {
		d.track = func(s *state, idx uint64, c Command) { track(s, idx, as(c)) }
	}
	if version != nil {
		d.version = func(c Command) byte { return version(as(c)) }
	}
	commands[t] = d
}

// touch records that a command changed service name (readers of
// ServicesChangedSince see it).
func touch(s *state, idx uint64, name string) {
	if e := s.services[name]; e != nil {
		e.touched = idx
	}
}

// v2 is the version rule of a command that always needs version 2.
func v2[P any](P) byte { return encodingV2 }

// versionOf is the lowest version carrying a command whose fields of
// version 2 and 3 are as given.
func versionOf(needs2, needs3 bool) byte {
	switch {
	case needs3:
		return encodingV3
	case needs2:
		return encodingV2
	}
	return encodingV1
}

// realVersion: a real server written with a health decision needs
// version 2, with a dynamic weight version 3.
func realVersion(rs ...model.RealServer) byte {
	needs2 := false
	for _, r := range rs {
		needs2 = needs2 || r.Health != nil
	}
	return versionOf(needs2, anyWeight(rs...))
}

func init() {
	register((*state).createService, func(s *state, idx uint64, c *CreateService) { touch(s, idx, c.Service.Name) },
		func(c *CreateService) byte {
			return max(realVersion(c.Reals...), versionOf(c.Service.UsesHealth(), false))
		})
	register((*state).updateService, func(s *state, idx uint64, c *UpdateService) { touch(s, idx, c.Name) },
		func(c *UpdateService) byte { return versionOf(c.Spec.UsesHealth(), false) })
	register((*state).deleteService, (*state).tombstone, nil)
	register((*state).createReal, func(s *state, idx uint64, c *CreateReal) { touch(s, idx, c.Service) },
		func(c *CreateReal) byte { return realVersion(c.Real) })
	register((*state).updateReal, func(s *state, idx uint64, c *UpdateReal) { touch(s, idx, c.Service) },
		func(c *UpdateReal) byte { return realVersion(c.Real) })
	register((*state).deleteReal, func(s *state, idx uint64, c *DeleteReal) { touch(s, idx, c.Service) }, nil)
	register((*state).createVIP, nil, nil)
	register((*state).updateVIP, nil, nil)
	register((*state).deleteVIP, nil, nil)
	register((*state).updateSettings, nil, nil)
	register((*state).registerNode, nil, func(c *RegisterNode) byte { return versionOf(nodeNeedsV2(c.Node), c.Node.HealthWeights) })
	register((*state).deregisterNode, nil, nil)
	register((*state).setHealth, func(s *state, idx uint64, c *SetHealth) {
		for _, ch := range c.Changes {
			touch(s, idx, ch.Service)
		}
	}, func(c *SetHealth) byte {
		for _, ch := range c.Changes {
			if ch.Weight != nil {
				return encodingV3
			}
		}
		return encodingV2
	})
	register((*state).releaseLease, nil, v2[*ReleaseLease])
	register((*state).initCluster, nil, v2[*InitCluster])
}

// newCommand returns a zero command of type t, or nil if t is unknown.
func newCommand(t CommandType) Command {
	if d, ok := commands[t]; ok {
		return d.new()
	}
	return nil
}

// encodingVersion is the lowest body version that can carry c.
func encodingVersion(c Command) byte {
	if d := commands[c.Type()]; d.version != nil {
		return d.version(c)
	}
	return encodingV1
}
