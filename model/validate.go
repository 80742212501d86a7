package model

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Limits on user input.
const (
	MaxPersistence = 31 * 24 * 3600 // seconds; ipvsadm accepts larger, nobody needs it
	MaxWeight      = 65535
	MaxTimeout     = 7 * 24 * 3600 // IPVS connection timeouts, seconds
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// schedFlags maps each scheduler flag to the schedulers it is valid with
// (nil = any scheduler, checked elsewhere).
var schedFlags = map[string][]string{
	"sh-fallback": {"sh"},
	"sh-port":     {"sh"},
	"mh-fallback": {"mh"},
	"mh-port":     {"mh"},
	"ops":         nil, // one-packet scheduling: UDP and fwmark services only
}

// ValidName reports whether s is a valid object name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// parseAddr parses a unicast IPv4 or IPv6 address for field.
func parseAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, Invalid(field, "required")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, Invalid(field, "%q is not an IPv4 or IPv6 address", s)
	}
	switch {
	case a.Zone() != "":
		return a, Invalid(field, "%q: zoned addresses are not supported", s)
	case a.Is4In6():
		return a, Invalid(field, "%q: write IPv4-mapped addresses in IPv4 form (%s)", s, a.Unmap())
	case a.IsUnspecified():
		return a, Invalid(field, "%q: the unspecified address cannot be used", s)
	case a.IsMulticast():
		return a, Invalid(field, "%q: multicast addresses cannot be used", s)
	}
	return a, nil
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return FamilyInet
	}
	return FamilyInet6
}

func checkPort(field string, p int, allowZero bool) error {
	if p < 0 || p > 65535 || (p == 0 && !allowZero) {
		if allowZero {
			return Invalid(field, "%d is not a port (0-65535)", p)
		}
		return Invalid(field, "%d is not a port (1-65535)", p)
	}
	return nil
}

func checkForward(field, f string, allowEmpty bool) error {
	switch f {
	case ForwardNAT, ForwardDR, ForwardTUN:
		return nil
	case "":
		if allowEmpty {
			return nil
		}
		return Invalid(field, "required: one of nat, dr, tun")
	}
	return Invalid(field, "%q is not a forwarding method: one of nat, dr, tun", f)
}

// CheckIfName validates a Linux interface name.
func CheckIfName(field, s string) error {
	if s == "" {
		return Invalid(field, "required")
	}
	if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return Invalid(field, "%q is not a valid interface name (at most 15 characters, no '/', ':' or spaces)", s)
	}
	return nil
}

// NormalizeService validates spec and returns it in canonical form: protocol
// lower case, canonical address, family set, flags sorted. It does not look at
// other services; Apply checks names and keys for duplicates.
func NormalizeService(spec ServiceSpec) (ServiceSpec, error) {
	s := spec
	s.SchedFlags = slices.Clone(spec.SchedFlags)
	if !ValidName(s.Name) {
		return s, Invalid("name", "%q is not a valid name (1-63 of A-Z a-z 0-9 _ . -, starting with a letter or digit)", s.Name)
	}
	s.Protocol = strings.ToLower(s.Protocol)
	if s.Fwmark != 0 {
		if s.Protocol != "" || s.Address != "" || s.Port != 0 {
			return s, Invalid("fwmark", "a fwmark service has no protocol, address or port")
		}
		if s.Family == "" {
			s.Family = FamilyInet
		}
		if s.Family != FamilyInet && s.Family != FamilyInet6 {
			return s, Invalid("family", "%q is not an address family: inet or inet6", s.Family)
		}
	} else {
		switch s.Protocol {
		case "tcp", "udp", "sctp":
		case "":
			return s, Invalid("protocol", "required: tcp, udp or sctp (or set fwmark)")
		default:
			return s, Invalid("protocol", "%q is not a protocol: tcp, udp or sctp", s.Protocol)
		}
		a, err := parseAddr("address", s.Address)
		if err != nil {
			return s, err
		}
		s.Address = a.String()
		fam := familyOf(a)
		if s.Family != "" && s.Family != fam {
			return s, Invalid("family", "%q does not match address %s", s.Family, s.Address)
		}
		s.Family = fam
		if err := checkPort("port", s.Port, true); err != nil {
			return s, err
		}
		if s.Port == 0 && s.Persistence == 0 {
			return s, Invalid("port", "port 0 (all ports) requires persistence")
		}
	}
	if s.Scheduler == "" {
		s.Scheduler = DefaultScheduler
	}
	if !slices.Contains(Schedulers, s.Scheduler) {
		return s, Invalid("scheduler", "%q is not a scheduler: one of %s", s.Scheduler, strings.Join(Schedulers, ", "))
	}
	slices.Sort(s.SchedFlags)
	s.SchedFlags = slices.Compact(s.SchedFlags)
	for _, f := range s.SchedFlags {
		scheds, ok := schedFlags[f]
		if !ok {
			return s, Invalid("sched_flags", "%q is not a scheduler flag: sh-fallback, sh-port, mh-fallback, mh-port or ops", f)
		}
		if scheds != nil && !slices.Contains(scheds, s.Scheduler) {
			return s, Invalid("sched_flags", "%q applies only to the %s scheduler", f, scheds[0])
		}
		if f == "ops" && s.Protocol != "udp" && s.Fwmark == 0 {
			return s, Invalid("sched_flags", "ops (one-packet scheduling) applies only to udp and fwmark services")
		}
	}
	if len(s.SchedFlags) == 0 {
		s.SchedFlags = nil
	}
	if s.Persistence < 0 || s.Persistence > MaxPersistence {
		return s, Invalid("persistence", "%d is out of range (0-%d seconds)", s.Persistence, MaxPersistence)
	}
	maxBits := 32
	if s.Family == FamilyInet6 {
		maxBits = 128
	}
	if s.PersistNetmask < 0 || s.PersistNetmask > maxBits {
		return s, Invalid("persist_netmask", "%d is not a prefix length for %s (1-%d)", s.PersistNetmask, s.Family, maxBits)
	}
	if s.PersistNetmask == maxBits {
		s.PersistNetmask = 0 // canonical: whole address
	}
	if s.PersistNetmask != 0 && s.Persistence == 0 {
		return s, Invalid("persist_netmask", "set only with persistence")
	}
	if s.Forward == "" {
		s.Forward = DefaultForward
	}
	if err := checkForward("forward", s.Forward, false); err != nil {
		return s, err
	}
	return normalizeHealth(s)
}

// MaxQuorum bounds a service's quorum and hysteresis (total weight).
const MaxQuorum = 1 << 30

// normalizeHealth validates the health-checking fields of a service.
func normalizeHealth(s ServiceSpec) (ServiceSpec, error) {
	if s.Check != nil {
		c, err := NormalizeCheck(*s.Check)
		if err != nil {
			var fe *Error
			if errors.As(err, &fe) {
				return s, PrefixField("check", fe)
			}
			return s, Invalid("check", "%v", err)
		}
		s.Check = &c
	}
	if s.HealthPolicy != "" && !slices.Contains(HealthPolicies, s.HealthPolicy) {
		return s, Invalid("health_policy", "%q is not a policy: majority, any or all", s.HealthPolicy)
	}
	if s.HealthPolicy == HealthPolicyMajority {
		s.HealthPolicy = "" // canonical: the default
	}
	if s.Quorum < 0 || s.Quorum > MaxQuorum {
		return s, Invalid("quorum", "%d is out of range (0-%d; 0 = 1)", s.Quorum, MaxQuorum)
	}
	if s.Hysteresis < 0 || s.Hysteresis > s.EffectiveQuorum() {
		return s, Invalid("hysteresis", "%d is out of range (0 to the quorum, %d)", s.Hysteresis, s.EffectiveQuorum())
	}
	if ss := s.SorryServer; ss != nil {
		c := *ss
		a, err := parseAddr("sorry_server.address", c.Address)
		if err != nil {
			return s, err
		}
		c.Address = a.String()
		if err := checkForward("sorry_server.forward", c.Forward, true); err != nil {
			return s, err
		}
		if err := checkPort("sorry_server.port", c.Port, true); err != nil {
			return s, err
		}
		if c.Port == 0 {
			c.Port = s.Port
		}
		fwd := c.Forward
		if fwd == "" {
			fwd = s.Forward
		}
		if familyOf(a) != s.Family && fwd != ForwardTUN {
			return s, Invalid("sorry_server.address", "%s is %s but the service is %s", c.Address, familyOf(a), s.Family)
		}
		if fwd != ForwardNAT && s.Fwmark == 0 && c.Port != s.Port {
			return s, Invalid("sorry_server.port", "%s forwarding cannot change the port: use %d (the service's) or nat", fwd, s.Port)
		}
		s.SorryServer = &c
	}
	return s, nil
}

// NormalizeReal validates r as a real server of svc (which must be
// normalised) and returns it in canonical form.
func NormalizeReal(svc ServiceSpec, r RealServer) (RealServer, error) {
	a, err := parseAddr("address", r.Address)
	if err != nil {
		return r, err
	}
	r.Address = a.String()
	if err := checkForward("forward", r.Forward, true); err != nil {
		return r, err
	}
	fwd := svc.EffectiveForward(r)
	if familyOf(a) != svc.Family && fwd != ForwardTUN {
		return r, Invalid("address", "%s is %s but service %s is %s (mixed families need tun forwarding)",
			r.Address, familyOf(a), svc.Name, svc.Family)
	}
	if err := checkPort("port", r.Port, true); err != nil {
		return r, err
	}
	if r.Port == 0 {
		r.Port = svc.Port
	}
	if fwd != ForwardNAT && svc.Fwmark == 0 && r.Port != svc.Port {
		return r, Invalid("port", "%s forwarding cannot change the port: use %d (the service's) or nat", fwd, svc.Port)
	}
	if r.Weight < 0 || r.Weight > MaxWeight {
		return r, Invalid("weight", "%d is out of range (0-%d)", r.Weight, MaxWeight)
	}
	if r.UpperThreshold < 0 {
		return r, Invalid("upper_threshold", "%d is negative", r.UpperThreshold)
	}
	if r.LowerThreshold < 0 {
		return r, Invalid("lower_threshold", "%d is negative", r.LowerThreshold)
	}
	// IPVS refuses a lower threshold above the upper one with ERANGE, also
	// when the upper one is 0 (none), so the write is refused here rather
	// than by the kernel on every retry.
	if r.LowerThreshold > r.UpperThreshold {
		if r.UpperThreshold == 0 {
			return r, Invalid("lower_threshold", "%d needs an upper_threshold at least as large (without one, the lower threshold must be 0)", r.LowerThreshold)
		}
		return r, Invalid("lower_threshold", "%d is above upper_threshold %d", r.LowerThreshold, r.UpperThreshold)
	}
	switch r.State {
	case "":
		r.State = StateEnabled
	case StateEnabled, StateDrain, StateDisabled:
	default:
		return r, Invalid("state", "%q is not a state: enabled, drain or disabled", r.State)
	}
	return r, nil
}

// NormalizeVIP validates v and returns it in canonical form.
func NormalizeVIP(v VIP) (VIP, error) {
	if v.Address == "" {
		return v, Invalid("address", "required (address/prefix, e.g. 192.0.2.10/24)")
	}
	s := v.Address
	if !strings.Contains(s, "/") {
		a, err := parseAddr("address", s)
		if err != nil {
			return v, err
		}
		s = fmt.Sprintf("%s/%d", a, a.BitLen())
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return v, Invalid("address", "%q is not an address/prefix", v.Address)
	}
	if _, err := parseAddr("address", p.Addr().String()); err != nil {
		return v, err
	}
	if p.Addr().IsLoopback() || p.Addr().IsLinkLocalUnicast() {
		return v, Invalid("address", "%s: loopback and link-local addresses cannot be VIPs", p.Addr())
	}
	v.Address = p.String()
	if err := CheckIfName("interface", v.Interface); err != nil {
		return v, err
	}
	if v.Group == "" {
		v.Group = DefaultVIPGroup
	}
	if !ValidName(v.Group) {
		return v, Invalid("group", "%q is not a valid group name", v.Group)
	}
	return v, nil
}

// NormalizeSettings validates s and returns it in canonical form.
func NormalizeSettings(s Settings) (Settings, error) {
	if s.TimingProfile == "" {
		s.TimingProfile = DefaultProfile
	}
	if !slices.Contains(TimingProfiles, s.TimingProfile) {
		return s, Invalid("timing_profile", "%q is not a timing profile: %s", s.TimingProfile, strings.Join(TimingProfiles, ", "))
	}
	for _, t := range []struct {
		field string
		v     int
	}{{"ipvs_timeouts.tcp", s.Timeouts.TCP}, {"ipvs_timeouts.tcpfin", s.Timeouts.TCPFin}, {"ipvs_timeouts.udp", s.Timeouts.UDP}} {
		if t.v < 0 || t.v > MaxTimeout {
			return s, Invalid(t.field, "%d is out of range (0-%d seconds; 0 keeps the kernel's value)", t.v, MaxTimeout)
		}
	}
	y := &s.Sync
	if y.Mode == "" {
		y.Mode = SyncModeBoth
	}
	if y.Mode != SyncModeBoth && y.Mode != SyncModeLeader {
		return s, Invalid("sync.mode", "%q is not a sync mode: both or leader", y.Mode)
	}
	if y.SyncID < 0 || y.SyncID > 255 {
		return s, Invalid("sync.sync_id", "%d is out of range (0-255)", y.SyncID)
	}
	if y.Enabled || y.Interface != "" {
		if err := CheckIfName("sync.interface", y.Interface); err != nil {
			return s, err
		}
	}
	g, err := netip.ParseAddr(y.McastGroup)
	if err != nil || !g.IsMulticast() || g.Zone() != "" {
		return s, Invalid("sync.mcast_group", "%q is not a multicast group address", y.McastGroup)
	}
	y.McastGroup = g.String()
	if err := checkPort("sync.mcast_port", y.McastPort, false); err != nil {
		return s, err
	}
	if y.McastTTL < 1 || y.McastTTL > 255 {
		return s, Invalid("sync.mcast_ttl", "%d is out of range (1-255)", y.McastTTL)
	}
	if y.MaxLen != 0 && (y.MaxLen < 256 || y.MaxLen > 65507) {
		return s, Invalid("sync.maxlen", "%d is out of range (256-65507, or 0 for the kernel default)", y.MaxLen)
	}
	return s, nil
}

// NormalizeNode validates director metadata.
func NormalizeNode(n Node) (Node, error) {
	if !ValidName(n.ID) {
		return n, Invalid("id", "%q is not a valid node id", n.ID)
	}
	if _, _, err := net.SplitHostPort(n.RaftAddr); err != nil {
		return n, Invalid("raft_addr", "%q is not host:port", n.RaftAddr)
	}
	if _, _, err := net.SplitHostPort(n.APIAddr); err != nil {
		return n, Invalid("api_addr", "%q is not host:port", n.APIAddr)
	}
	if n.APIScheme == "" {
		n.APIScheme = "http"
	}
	if n.APIScheme != "http" && n.APIScheme != "https" {
		return n, Invalid("api_scheme", "%q is not http or https", n.APIScheme)
	}
	switch n.Dataplane {
	case "", "ipvs", "nft", "none":
	default:
		return n, Invalid("dataplane", "%q is not ipvs, nft or none", n.Dataplane)
	}
	if n.Priority < 0 || n.Priority > 255 {
		return n, Invalid("priority", "%d is out of range (1-255; 0 = %d)", n.Priority, DefaultPriority)
	}
	if n.PreemptDelay != "" {
		d, err := time.ParseDuration(n.PreemptDelay)
		if err != nil || d < 0 || d > time.Hour {
			return n, Invalid("preempt_delay", "%q is not a duration between 0s and 1h", n.PreemptDelay)
		}
	}
	if n.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(n.GossipAddr); err != nil {
			return n, Invalid("gossip_addr", "%q is not host:port", n.GossipAddr)
		}
	}
	if len(n.Fault) > 512 {
		n.Fault = n.Fault[:512]
	}
	return n, nil
}
