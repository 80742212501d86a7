package nft

import (
	"errors"
	"fmt"
	"slices"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/model"
)

// ErrNotExpressible wraps every refusal of a service or destination that
// nftables cannot express (a scheduler, forwarding method, flag or
// threshold); the message names what and why.
var ErrNotExpressible = errors.New("not expressible by the nftables dataplane")

// schedulers are the IPVS schedulers this backend expresses:
//
//   - rr: numgen inc over the destinations with weight > 0, one slot each;
//   - wrr: numgen inc over slots proportional to the weights (divided by
//     their greatest common divisor), so the split is exact;
//   - sh: jhash of the source address (and port with sh-port) over the
//     same weighted slots;
//   - dh: jhash of the destination address over one slot per destination
//     with weight > 0 (useful with fwmark services).
//
// The others need per-destination connection counts (lc, wlc, sed, nq,
// lblc, lblcr, fo, ovf, twos) which nftables rules cannot read, or IPVS's
// own hash tables (mh).
var schedulers = []string{"rr", "wrr", "sh", "dh"}

// Capabilities says what this backend can express, for validation: the
// schedulers above, NAT (DNAT) only, persistence (a timed map per service),
// fwmark services, no thresholds (they need connection counts).
func Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{
		Schedulers:  slices.Clone(schedulers),
		Flags:       slices.Clone(flagsOK),
		Forwards:    []string{"nat"},
		Persistence: true,
		Fwmark:      true,
		Thresholds:  false,
	}
}

// Flags this backend accepts. sh-fallback is what sh does here anyway
// (destinations with weight 0 have no slots, so their clients hash to the
// others); sh-port hashes the source port too; mh-* mean nothing without
// mh and are accepted and ignored, as IPVS does. "ops" (one-packet
// scheduling) is refused: NAT here is done once per connection by
// conntrack, so every later packet of a flow follows the first.
var flagsOK = []string{"sh-fallback", "sh-port", "mh-fallback", "mh-port"}

func notExpressible(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotExpressible, fmt.Sprintf(format, args...))
}

// validateService checks what a service's own fields ask for.
func validateService(s dataplane.Service) error {
	if err := validateIdentity(s); err != nil {
		return err
	}
	if !slices.Contains(schedulers, s.Scheduler) {
		return notExpressible("scheduler %q (nftables supports %v; the others need connection counts the rules cannot see)", s.Scheduler, schedulers)
	}
	for _, f := range s.Flags {
		if f == "ops" {
			return notExpressible(`flag "ops" (one-packet scheduling): conntrack NATs whole flows`)
		}
		if !slices.Contains(flagsOK, f) {
			return fmt.Errorf("unknown scheduler flag %q", f)
		}
	}
	bits := 32
	if s.Family == "inet6" || (s.Fwmark == 0 && s.Address.Is6()) {
		bits = 128
	}
	if s.Netmask < 0 || s.Netmask > bits {
		return fmt.Errorf("persistence netmask /%d is out of range for %s", s.Netmask, s.Family)
	}
	return nil
}

// validateIdentity checks the fields that make up the key.
func validateIdentity(s dataplane.Service) error {
	if s.Fwmark != 0 {
		if s.Family != "inet" && s.Family != "inet6" {
			return fmt.Errorf("fwmark service family %q is not inet or inet6", s.Family)
		}
		if s.Protocol != "" || s.Address.IsValid() || s.Port != 0 {
			return errors.New("a fwmark service has no protocol, address or port")
		}
		return nil
	}
	if _, ok := protoNumbers[s.Protocol]; !ok {
		return fmt.Errorf("protocol %q is not tcp, udp or sctp", s.Protocol)
	}
	if !s.Address.IsValid() || s.Address.Zone() != "" {
		return fmt.Errorf("service address %q is not a plain IP address", s.Address)
	}
	if s.Family != "" && s.Family != familyOf(s.Address) {
		return fmt.Errorf("service family %q does not match address %s", s.Family, s.Address)
	}
	return nil
}

// serviceIs6 reports whether s is an IPv6 service.
func serviceIs6(s dataplane.Service) bool {
	if s.Fwmark != 0 {
		return s.Family == "inet6"
	}
	return s.Address.Is6()
}

// validateDest checks one destination of service s.
func validateDest(s dataplane.Service, d dataplane.Destination) error {
	if !d.Address.IsValid() || d.Address.Zone() != "" {
		return fmt.Errorf("destination address %q is not a plain IP address", d.Address)
	}
	if d.Address.Is6() != serviceIs6(s) {
		return notExpressible("destination %s is not of the service's address family (NAT cannot cross families)", d.Key())
	}
	if d.Forward != "nat" {
		return notExpressible("forwarding method %q for %s (nftables does NAT only)", d.Forward, d.Key())
	}
	if d.UpperThreshold != 0 || d.LowerThreshold != 0 {
		return notExpressible("connection thresholds on %s (nftables rules cannot count a destination's connections)", d.Key())
	}
	if d.Weight < 0 || d.Weight > model.MaxWeight {
		return fmt.Errorf("weight %d of %s is not 0..%d", d.Weight, d.Key(), model.MaxWeight)
	}
	if d.Port == 0 && s.Fwmark == 0 && s.Port != 0 {
		return fmt.Errorf("destination %s has port 0: give the real server's port (the service's is %d)", d.Key(), s.Port)
	}
	return nil
}

// keepsPort reports whether connections to s keep their destination port:
// a port-zero or fwmark service whose destinations have port 0. Such a
// service cannot mix destinations with and without a port, because one
// DNAT statement either sets the port or leaves it.
func keepsPort(vs dataplane.VirtualService) (keep bool, err error) {
	if vs.Fwmark == 0 && vs.Port != 0 {
		return false, nil
	}
	zero, other := 0, 0
	for _, d := range vs.Dests {
		if d.Port == 0 {
			zero++
		} else {
			other++
		}
	}
	if zero > 0 && other > 0 {
		return false, notExpressible("%s mixes destinations with port 0 (keep the client's port) and with a port; one DNAT does one or the other", vs.Key())
	}
	return other == 0, nil
}
