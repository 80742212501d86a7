package dataplane

import (
	"net/netip"
	"slices"

	"github.com/raftlb/raftlb/model"
)

// Desired is everything the reconciler makes the kernel hold.
type Desired struct {
	Table    Table
	Names    map[string]string // service name -> its key in Table
	Index    uint64            // the FSM index this reflects (for incremental sources)
	Timeouts Timeouts
	Sync     []SyncDaemon // connection-sync daemons this director runs
}

// Delta is the part of the desired state that changed after an index.
type Delta struct {
	Services map[string]VirtualService // by service name: the new desired state of each changed service
	Deleted  []string                  // names of deleted services
	Index    uint64                    // the FSM index this reflects
	Timeouts Timeouts
	Sync     []SyncDaemon
}

// IncrementalSource is a Source that can tell what changed after an index,
// so that a change costs the reconciler the size of what changed, not of
// the whole table.
type IncrementalSource interface {
	Source
	// DesiredSince returns the changes after index since, or ok=false when
	// it cannot (the history does not reach back): then use Desired.
	DesiredSince(since uint64) (d Delta, ok bool)
}

// FromFSM derives the dataplane table from the replicated services, with
// the name of each service's key.
func FromFSM(services []model.Service) (Table, map[string]string) {
	t := make(Table, len(services))
	names := make(map[string]string, len(services))
	for _, s := range services {
		vs := FromFSMService(s)
		t[vs.Key()] = vs
		names[s.Name] = vs.Key()
	}
	return t, names
}

// FromFSMService derives one virtual service from the replicated state:
//
//   - an enabled real server with its weight, a draining one with weight 0
//     (existing connections finish, no new ones), a disabled one not at all;
//   - a real server the cluster decided down (!Healthy) not at all, or with
//     InhibitOnFailure with weight 0 (keepalived's inhibit_on_failure:
//     established connections are not reset);
//   - while the quorum is lost (QuorumLost, decided in the FSM with
//     keepalived's hysteresis) and a sorry server is set: the sorry server
//     with weight 1 takes every new connection, and the real servers that
//     would take new ones leave (keepalived removes the live real servers
//     and adds the sorry server). Destinations with weight 0 (draining,
//     or down and inhibited) stay, so their established connections are
//     not cut. Without a sorry server the healthy servers that remain keep
//     serving.
//
// It reads only s, so following the FSM's per-service changes
// (ServicesChangedSince) gives the same table as a full rebuild.
func FromFSMService(s model.Service) VirtualService {
	vs := VirtualService{Service: serviceFromSpec(s.ServiceSpec), Dests: make(map[string]Destination, len(s.Reals))}
	sorry := s.QuorumLost && s.SorryServer != nil
	for _, r := range s.Reals {
		w, programmed := s.EffectiveWeight(r)
		if !programmed {
			continue
		}
		d := Destination{Port: uint16(r.Port), Weight: w, Forward: s.EffectiveForward(r),
			UpperThreshold: uint32(r.UpperThreshold), LowerThreshold: uint32(r.LowerThreshold)}
		d.Address, _ = netip.ParseAddr(r.Address)
		if sorry && d.Weight != 0 {
			continue // the sorry server takes the new connections
		}
		vs.Dests[d.Key()] = d
	}
	if sorry {
		d := sorryDestination(s.ServiceSpec)
		vs.Dests[d.Key()] = d // replaces a real server at the same address and port
	}
	return vs
}

// sorryDestination is the destination of a service's sorry server: weight
// 1, its own forwarding method or the service's, its own port or the
// service's.
func sorryDestination(s model.ServiceSpec) Destination {
	ss := s.SorryServer
	d := Destination{Port: uint16(ss.Port), Weight: 1, Forward: ss.Forward}
	d.Address, _ = netip.ParseAddr(ss.Address)
	if ss.Port == 0 {
		d.Port = uint16(s.Port)
	}
	if d.Forward == "" {
		d.Forward = s.Forward
	}
	return d
}

func serviceFromSpec(s model.ServiceSpec) Service {
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
func SyncFromSettings(s model.SyncConfig, leader bool) []SyncDaemon {
	if !s.Enabled {
		return nil
	}
	base := SyncDaemon{SyncID: s.SyncID, Interface: s.Interface, McastPort: s.McastPort, McastTTL: s.McastTTL, MaxLen: s.MaxLen}
	base.McastGroup, _ = netip.ParseAddr(s.McastGroup)
	master, backup := base, base
	master.Role, backup.Role = "master", "backup"
	switch {
	case s.Mode == model.SyncModeBoth:
		return []SyncDaemon{master, backup}
	case leader:
		return []SyncDaemon{master}
	default:
		return []SyncDaemon{backup}
	}
}

// TimeoutsFromSettings converts the replicated IPVS timeouts.
func TimeoutsFromSettings(t model.Timeouts) Timeouts {
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
