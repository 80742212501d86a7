// Package fsm holds raftlb's replicated state: virtual services, their real
// servers, VIPs, cluster settings and director metadata, the typed commands that
// change it, and the raft.FSM that applies them.
//
// Everything that can be written is validated by the functions in validate.go.
// The API, the CLI and (later) the keepalived.conf importer call the same
// functions, and Apply calls them again, so a command that is invalid against
// the state it is applied to changes nothing on any director.
package model

import (
	"net/netip"
	"reflect"
	"slices"
	"strconv"
)

// Schedulers are the IPVS scheduling algorithms raftlb accepts, in ipvsadm's
// spelling.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// Forwarding methods (ipvsadm -m, -g, -i).
const (
	ForwardNAT = "nat"
	ForwardDR  = "dr"
	ForwardTUN = "tun"
)

// Real server administrative states.
const (
	StateEnabled  = "enabled"  // in rotation with its weight
	StateDrain    = "drain"    // kept with weight 0: existing connections finish, no new ones
	StateDisabled = "disabled" // removed from the dataplane, kept in the state
)

// Address families for fwmark services.
const (
	FamilyInet  = "inet"
	FamilyInet6 = "inet6"
)

// Defaults, following ipvsadm where it has one.
const (
	DefaultScheduler = "wlc"
	DefaultForward   = ForwardNAT
	DefaultWeight    = 1
	DefaultVIPGroup  = "default"
	DefaultProfile   = "lan"
)

// TimingProfiles are the raft timing profile names (see cluster.ProfileByName).
var TimingProfiles = []string{"lan", "fast"}

// ServiceSpec is what an operator sets on a virtual service. A service is
// either protocol+address+port or a firewall mark (with its address family).
type ServiceSpec struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol,omitempty"` // tcp | udp | sctp; empty for fwmark services
	Address  string `json:"address,omitempty"`  // IPv4 or IPv6; empty for fwmark services
	Port     int    `json:"port,omitempty"`     // 0 only with persistence (all ports)
	Fwmark   uint32 `json:"fwmark,omitempty"`
	Family   string `json:"family,omitempty"` // inet | inet6; set from the address for non-fwmark services

	Scheduler      string   `json:"scheduler"`
	SchedFlags     []string `json:"sched_flags,omitempty"`     // sh-fallback, sh-port, mh-fallback, mh-port, ops
	Persistence    int      `json:"persistence,omitempty"`     // seconds; 0 = off (ipvsadm -p)
	PersistNetmask int      `json:"persist_netmask,omitempty"` // prefix length grouping clients for persistence; 0 = whole address (ipvsadm -M)
	Forward        string   `json:"forward"`                   // default forwarding method for its real servers

	// Health checking (encoding version 2). Check nil: not checked, every
	// real server counts as up.
	Check *Check `json:"check,omitempty"`
	// HealthPolicy is how the leader combines the directors' views of a
	// real server: majority (default), any, all. See HealthPolicy*.
	HealthPolicy string `json:"health_policy,omitempty"`
	// InhibitOnFailure keeps a failed real server with weight 0 instead of
	// removing it (keepalived's inhibit_on_failure): established
	// connections are not reset.
	InhibitOnFailure bool `json:"inhibit_on_failure,omitempty"`
	// Quorum is the minimum total weight of healthy, enabled real servers
	// for the service to be up; 0 means 1 (keepalived's default). The
	// service goes down below Quorum-Hysteresis and comes back at
	// Quorum+Hysteresis or more.
	Quorum     int `json:"quorum,omitempty"`
	Hysteresis int `json:"hysteresis,omitempty"`
	// SorryServer takes every new connection while the quorum is lost.
	SorryServer *SorryServer `json:"sorry_server,omitempty"`
}

// Health policies: when the leader declares a real server down.
const (
	HealthPolicyMajority = "majority" // a majority of the live directors see it down
	HealthPolicyAny      = "any"      // any one live director sees it down
	HealthPolicyAll      = "all"      // every live director sees it down
)

// HealthPolicies lists the accepted policies.
var HealthPolicies = []string{HealthPolicyMajority, HealthPolicyAny, HealthPolicyAll}

// SorryServer is the destination used while a service's quorum is lost
// (keepalived's sorry_server).
type SorryServer struct {
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"`    // 0 = the service's port
	Forward string `json:"forward,omitempty"` // empty = the service's default
}

// EffectiveQuorum is Quorum with its default applied.
func (s ServiceSpec) EffectiveQuorum() int {
	if s.Quorum == 0 {
		return 1
	}
	return s.Quorum
}

// EffectivePolicy is HealthPolicy with its default applied.
func (s ServiceSpec) EffectivePolicy() string {
	if s.HealthPolicy == "" {
		return HealthPolicyMajority
	}
	return s.HealthPolicy
}

// UsesHealth reports whether the spec sets any health-checking field (the
// fields of encoding version 2: the FSM writes a spec without them as
// version 1, and derives no quorum state for it).
func (s ServiceSpec) UsesHealth() bool {
	return s.Check != nil || s.HealthPolicy != "" || s.InhibitOnFailure || s.Quorum != 0 || s.Hysteresis != 0 || s.SorryServer != nil
}

// RealServer is one destination of a virtual service. Its key within the
// service is address:port.
type RealServer struct {
	Address        string `json:"address"`
	Port           int    `json:"port"`              // 0 = the service's port (normalised on write)
	Weight         int    `json:"weight"`            // 0..MaxWeight
	Forward        string `json:"forward,omitempty"` // empty = the service's default
	UpperThreshold int    `json:"upper_threshold,omitempty"`
	LowerThreshold int    `json:"lower_threshold,omitempty"`
	State          string `json:"state"` // enabled | drain | disabled

	// Health is the cluster's committed health decision (written only by
	// the leader's SetHealth; ignored in user writes). nil: no decision,
	// the real server counts as up.
	Health *RealHealth `json:"health,omitempty"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// RealSpec is what a writer says of a real server: a RealServer without
// what the cluster decides (Health) and the indexes. Writes carry it, so a
// read-modify-write never sends the cluster's own fields back.
type RealSpec struct {
	Address        string `json:"address"`
	Port           int    `json:"port,omitempty"`
	Weight         int    `json:"weight"`
	Forward        string `json:"forward,omitempty"`
	UpperThreshold int    `json:"upper_threshold,omitempty"`
	LowerThreshold int    `json:"lower_threshold,omitempty"`
	State          string `json:"state,omitempty"`
}

// NewRealSpec returns a RealSpec holding the defaults.
func NewRealSpec() RealSpec { return NewRealServer().Spec() }

// Spec is what a writer would say of r.
func (r RealServer) Spec() RealSpec {
	return RealSpec{Address: r.Address, Port: r.Port, Weight: r.Weight, Forward: r.Forward,
		UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold, State: r.State}
}

// Real is the real server s describes, with no decision and no indexes.
func (s RealSpec) Real() RealServer {
	return RealServer{Address: s.Address, Port: s.Port, Weight: s.Weight, Forward: s.Forward,
		UpperThreshold: s.UpperThreshold, LowerThreshold: s.LowerThreshold, State: s.State}
}

// RealHealth is a committed health decision.
type RealHealth struct {
	Up     bool   `json:"up"`
	Since  uint64 `json:"since"`            // raft index of the last up/down transition
	Reason string `json:"reason,omitempty"` // why (the views that decided it)
	// Weight is the dynamic weight decided for a real server that is up (a
	// script check with dynamic: exit code 2-255 = weight exit-2,
	// keepalived's misc_dynamic); it replaces the configured weight while
	// set. nil: the configured weight (never set on a down decision).
	// Encoding version 3: a decision without it is written as before.
	Weight *int `json:"weight,omitempty"`
}

// SameWeight reports whether two dynamic weights are the same (nil: the
// configured weight).
func SameWeight(a, b *int) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// CloneWeight returns a copy of a dynamic weight (nil stays nil).
func CloneWeight(w *int) *int {
	if w == nil {
		return nil
	}
	c := *w
	return &c
}

// Healthy reports whether the committed decision lets r serve.
func (r RealServer) Healthy() bool { return r.Health == nil || r.Health.Up }

// CurrentWeight is r's weight while it serves: the committed dynamic
// weight if there is one, else the configured weight.
func (r RealServer) CurrentWeight() int {
	if r.Health != nil && r.Health.Up && r.Health.Weight != nil {
		return *r.Health.Weight
	}
	return r.Weight
}

// HealthyWeight is what r adds to its service's healthy weight, the
// measure of the quorum: its current weight (the dynamic weight when one
// is decided, as keepalived's quorum counts the weight a MISC_CHECK set)
// while it is enabled and not decided down.
func (r RealServer) HealthyWeight() int {
	if r.State == StateEnabled && r.Healthy() {
		return r.CurrentWeight()
	}
	return 0
}

// HealthyWeight is the healthy weight of a service's real servers.
func HealthyWeight(reals []RealServer) int {
	w := 0
	for _, r := range reals {
		w += r.HealthyWeight()
	}
	return w
}

// EffectiveWeight is the weight every dataplane gives r in service s, and
// whether r is programmed at all: a disabled real server is absent; one
// decided down is absent, or kept with weight 0 when the service inhibits
// (keepalived's inhibit_on_failure: its connections are not cut); a
// draining one has weight 0 (its connections finish, no new ones come);
// an enabled one decided up with a dynamic weight has that weight (0: no
// new connections, like drain).
func (s ServiceSpec) EffectiveWeight(r RealServer) (weight int, programmed bool) {
	switch healthy := r.Healthy(); {
	case r.State == StateDisabled, !healthy && !s.InhibitOnFailure:
		return 0, false
	case r.State == StateDrain, !healthy:
		return 0, true
	}
	return r.CurrentWeight(), true
}

// NewRealServer returns a RealServer holding the defaults; decode user input
// over it so that absent fields keep their defaults.
func NewRealServer() RealServer {
	return RealServer{Weight: DefaultWeight, State: StateEnabled}
}

// Key is the real server's identity within its service: "addr:port".
func (r RealServer) Key() string { return RealKey(r.Address, r.Port) }

// RealKey formats a real server key. The address must already be canonical.
func RealKey(addr string, port int) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || port < 0 || port > 65535 {
		return addr + ":?"
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// Service is a virtual service as stored and returned: its spec, its real
// servers sorted by key, and its raft indexes.
type Service struct {
	ServiceSpec
	Reals []RealServer `json:"reals"`
	// QuorumLost: the healthy weight fell below quorum-hysteresis and has
	// not yet come back to quorum+hysteresis (the sorry server serves).
	QuorumLost  bool   `json:"quorum_lost,omitempty"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// NewServiceSpec returns a spec holding the defaults; decode user input over it.
func NewServiceSpec() ServiceSpec {
	return ServiceSpec{Scheduler: DefaultScheduler, Forward: DefaultForward}
}

// Key identifies the service in the kernel: "tcp/10.0.0.1:80" or
// "fwmark/inet/7". Two services may not share a key.
func (s ServiceSpec) Key() string {
	if s.Fwmark != 0 {
		return "fwmark/" + s.Family + "/" + strconv.FormatUint(uint64(s.Fwmark), 10)
	}
	return s.Protocol + "/" + RealKey(s.Address, s.Port)
}

// Real returns the real server with the given key.
func (s *Service) Real(key string) (RealServer, bool) {
	for _, r := range s.Reals {
		if r.Key() == key {
			return r, true
		}
	}
	return RealServer{}, false
}

// EffectiveForward is the forwarding method the dataplane uses for r.
func (s ServiceSpec) EffectiveForward(r RealServer) string {
	if r.Forward != "" {
		return r.Forward
	}
	return s.Forward
}

// VIP is a virtual IP address that only the leader holds.
type VIP struct {
	Address   string `json:"address"`   // address/prefix, e.g. 192.0.2.10/24
	Interface string `json:"interface"` // where the leader adds it
	Group     string `json:"group"`     // VIPs of one group move together

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// NewVIP returns a VIP holding the defaults; decode user input over it.
func NewVIP() VIP { return VIP{Group: DefaultVIPGroup} }

// Key is the VIP's identity: its address without the prefix length.
func (v VIP) Key() string { return VIPKey(v.Address) }

// VIPKey returns the key of a VIP given as "addr" or "addr/len".
func VIPKey(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	return s
}

// Timeouts are the IPVS connection timeouts in seconds (ipvsadm --set).
// Zero leaves the kernel's value alone.
type Timeouts struct {
	TCP    int `json:"tcp"`
	TCPFin int `json:"tcpfin"`
	UDP    int `json:"udp"`
}

// Sync modes of the IPVS connection-sync daemon.
const (
	SyncModeBoth   = "both"   // master and backup daemons on every director (keepalived's way)
	SyncModeLeader = "leader" // master on the VIP holder, backup on the others
)

// SyncConfig configures the IPVS connection-synchronisation daemon.
type SyncConfig struct {
	Enabled    bool   `json:"enabled"`
	Mode       string `json:"mode"` // both | leader
	SyncID     int    `json:"sync_id"`
	Interface  string `json:"interface,omitempty"`
	McastGroup string `json:"mcast_group"`
	McastPort  int    `json:"mcast_port"`
	McastTTL   int    `json:"mcast_ttl"`
	MaxLen     int    `json:"maxlen,omitempty"` // sync message payload; 0 = kernel default (MTU based)
}

// Settings are cluster-wide settings.
type Settings struct {
	TimingProfile string     `json:"timing_profile"`
	Timeouts      Timeouts   `json:"ipvs_timeouts"`
	Sync          SyncConfig `json:"sync"`
	ModifyIndex   uint64     `json:"modify_index"`
}

// DefaultSettings are the settings of a new cluster.
func DefaultSettings() Settings {
	return Settings{
		TimingProfile: DefaultProfile,
		Sync: SyncConfig{
			Mode:       SyncModeBoth,
			McastGroup: "224.0.0.81",
			McastPort:  8848,
			McastTTL:   1,
		},
	}
}

// Node is the metadata a director registers about itself, so that any
// director can forward writes to the leader's API, and so that services its
// dataplane cannot program are refused up front.
type Node struct {
	ID        string         `json:"id"`
	RaftAddr  string         `json:"raft_addr"`
	APIAddr   string         `json:"api_addr"`            // host:port
	APIScheme string         `json:"api_scheme"`          // http | https
	Dataplane string         `json:"dataplane,omitempty"` // ipvs | nft | none
	Caps      *DataplaneCaps `json:"caps,omitempty"`      // nil: no limits (none, and ipvs directors of earlier releases)

	// Who should lead (encoding version 2), as VRRP priority does.
	Priority     int    `json:"priority,omitempty"`      // 1-255; 0 = DefaultPriority
	PreemptDelay string `json:"preempt_delay,omitempty"` // Go duration; how long it must be eligible before it preempts
	NoPreempt    bool   `json:"nopreempt,omitempty"`     // never take leadership from a healthy leader
	Witness      bool   `json:"witness,omitempty"`       // a voter without dataplane: never holds VIPs, never leads for long
	Fault        string `json:"fault,omitempty"`         // a tracked check fails: it must not lead
	GossipAddr   string `json:"gossip_addr,omitempty"`   // host:port of its memberlist endpoint
	// LogChecksums: this director reads log entries with a checksum
	// (FSM.Encode writes them once every registered director does).
	LogChecksums bool `json:"log_checksums,omitempty"`
	// HealthWeights: this director reads dynamic weights (encoding version
	// 3, gossip wire version 3); the leader commits them once every
	// registered director does. Encoding version 3 itself: a director
	// registers it only once every registered director is a gossip member
	// that reads it (agent: healthCore.mayDeclareWeights).
	HealthWeights bool `json:"health_weights,omitempty"`

	ModifyIndex uint64 `json:"modify_index"` // when it was last registered
}

// DefaultPriority is a director's priority when none is given.
const DefaultPriority = 100

// EffectivePriority is Priority with its default applied.
func (n Node) EffectivePriority() int {
	if n.Priority == 0 {
		return DefaultPriority
	}
	return n.Priority
}

// LeaseRelease records that the VIP holder of a raft term released the
// VIPs on purpose (planned handover): the leader of the next term may claim
// them without waiting for that lease to run out. docs/fencing.md.
type LeaseRelease struct {
	Node  string `json:"node"`
	Term  uint64 `json:"term"`  // the raft term of the entry (set by Apply, not by the writer)
	Index uint64 `json:"index"` // the raft index of the entry
}

// Equal reports whether two registrations say the same (ignoring when).
func (n Node) Equal(o Node) bool {
	n.ModifyIndex, o.ModifyIndex = 0, 0
	return reflect.DeepEqual(n, o)
}

// DataplaneCaps is what a director's dataplane can express. Services and
// real servers beyond it are refused while that director is registered.
//
// ForwardTUN in Forwards is IPVS tunnelling, the only forwarding that
// reaches a real server of the other address family, and the kernel
// refuses such a real server and a connection-sync daemon together (see
// CrossesFamilies). That rule is read from Forwards rather than from a
// field of its own: older directors decode registrations strictly, and a
// new field would stop them applying the log in a rolling upgrade.
type DataplaneCaps struct {
	Schedulers  []string `json:"schedulers"`
	Flags       []string `json:"flags"`
	Forwards    []string `json:"forwards"`
	Persistence bool     `json:"persistence"`
	Fwmark      bool     `json:"fwmark"`
	Thresholds  bool     `json:"thresholds"`
}

// CrossesFamilies reports whether the dataplane can program a real server
// of the other address family than its service's with forwarding method
// fwd: only with tun, the one forwarding that crosses families (IPv4 in
// IPv6, IPv6 in IPv4; IPVS refuses nat and dr, nftables does NAT only),
// when the dataplane has it. syncOK says whether it can while the
// connection-sync daemon runs: IPVS, the only dataplane with either,
// refuses the second of the two with EINVAL, whichever order they come
// in (found in the VM: integration/vm/guest/kernel_test.go).
func (c DataplaneCaps) CrossesFamilies(fwd string) (ok, syncOK bool) {
	return fwd == ForwardTUN && slices.Contains(c.Forwards, ForwardTUN), false
}
