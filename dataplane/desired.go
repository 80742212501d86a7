package dataplane

import (
	"net/netip"
	"slices"

	"github.com/raftlb/raftlb/fsm"
)

// Desired is everything the reconciler makes the kernel hold.
type Desired struct {
	Table    Table
	Timeouts Timeouts
	Sync     []SyncDaemon // connection-sync daemons this director runs
}

// FromFSM derives the dataplane table from the replicated services: an
// enabled real server with its weight, a draining one with weight 0 (existing
// connections finish, no new ones), a disabled one not at all.
func FromFSM(services []fsm.Service) Table {
	t := make(Table, len(services))
	for _, s := range services {
		vs := VirtualService{Service: serviceFromSpec(s.ServiceSpec), Dests: make(map[string]Destination, len(s.Reals))}
		for _, r := range s.Reals {
			if r.State == fsm.StateDisabled {
				continue
			}
			d := Destination{Port: uint16(r.Port), Weight: r.Weight, Forward: s.EffectiveForward(r),
				UpperThreshold: uint32(r.UpperThreshold), LowerThreshold: uint32(r.LowerThreshold)}
			d.Address, _ = netip.ParseAddr(r.Address)
			if r.State == fsm.StateDrain {
				d.Weight = 0
			}
			vs.Dests[d.Key()] = d
		}
		t[vs.Key()] = vs
	}
	return t
}

func serviceFromSpec(s fsm.ServiceSpec) Service {
	out := Service{Protocol: s.Protocol, Port: uint16(s.Port), Fwmark: s.Fwmark, Family: s.Family,
		Scheduler: s.Scheduler, Flags: slices.Clone(s.SchedFlags), Timeout: uint32(s.Persistence), Netmask: s.PersistNetmask}
	if s.Fwmark == 0 {
		out.Address, _ = netip.ParseAddr(s.Address)
	}
	return out
}

// SyncFromSettings returns the sync daemons a director runs: none when
// disabled; master and backup everywhere in mode "both"; in mode "leader"
// master on the leader and backup elsewhere.
func SyncFromSettings(s fsm.SyncConfig, leader bool) []SyncDaemon {
	if !s.Enabled {
		return nil
	}
	base := SyncDaemon{SyncID: s.SyncID, Interface: s.Interface, McastPort: s.McastPort, McastTTL: s.McastTTL, MaxLen: s.MaxLen}
	base.McastGroup, _ = netip.ParseAddr(s.McastGroup)
	master, backup := base, base
	master.Role, backup.Role = "master", "backup"
	switch {
	case s.Mode == fsm.SyncModeBoth:
		return []SyncDaemon{master, backup}
	case leader:
		return []SyncDaemon{master}
	default:
		return []SyncDaemon{backup}
	}
}

// TimeoutsFromSettings converts the replicated IPVS timeouts.
func TimeoutsFromSettings(t fsm.Timeouts) Timeouts {
	return Timeouts{TCP: t.TCP, TCPFin: t.TCPFin, UDP: t.UDP}
}

// Clone returns a deep copy of t.
func (t Table) Clone() Table {
	out := make(Table, len(t))
	for k, vs := range t {
		c := VirtualService{Service: vs.Service, Dests: make(map[string]Destination, len(vs.Dests))}
		c.Flags = slices.Clone(vs.Flags)
		for dk, d := range vs.Dests {
			c.Dests[dk] = d
		}
		out[k] = c
	}
	return out
}

// Count returns the number of services and destinations in t.
func (t Table) Count() (services, dests int) {
	for _, vs := range t {
		services++
		dests += len(vs.Dests)
	}
	return
}
