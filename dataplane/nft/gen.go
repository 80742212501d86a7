package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/raftlb/raftlb/dataplane"
	"golang.org/x/sys/unix"
)

// Registers. A schedule rule computes a slot in regKey and finds a
// destination (address . port, each padded to 4 bytes) for regData; an
// IPv6 address fills four 32-bit registers, so regData starts after them.
// A pin set key is built from pinKey on (see stickyRule).
var (
	regKey  = reg(0)
	regData = reg(4)
)

// reg returns the number of the i-th 32-bit register as the kernel reports
// it: registers starting a 128-bit one are dumped as NFT_REG_1..4.
func reg(i uint32) uint32 {
	if i%4 == 0 {
		return unix.NFT_REG_1 + i/4
	}
	return unix.NFT_REG32_00 + i
}

// hashSeed is the jhash seed of sh and dh. It is fixed so that every
// director of a cluster maps a client to the same real server, and a
// failover keeps source hashing's promise.
const hashSeed = 0x72616674 // "raft"

// persistSize bounds each persistent service's pin set. When it is full,
// new clients are scheduled without being remembered (see rememberRule).
const persistSize = 1 << 20

// ipFamily holds what differs between IPv4 and IPv6 rules.
type ipFamily struct {
	nfproto  byte
	addrLen  uint32 // bytes
	saddrOff uint32 // source address offset in the network header
	daddrOff uint32
	addrType nftables.SetDatatype
}

var (
	ipv4 = ipFamily{nfproto: unix.NFPROTO_IPV4, addrLen: 4, saddrOff: 12, daddrOff: 16, addrType: nftables.TypeIPAddr}
	ipv6 = ipFamily{nfproto: unix.NFPROTO_IPV6, addrLen: 16, saddrOff: 8, daddrOff: 24, addrType: nftables.TypeIP6Addr}
)

func familyFor(s dataplane.Service) ipFamily {
	if serviceIs6(s) {
		return ipv6
	}
	return ipv4
}

// destType is address . inet_service: the dst_ set's key and the schedule
// map's data.
func (f ipFamily) destType() nftables.SetDatatype {
	return nftables.MustConcatSetType(f.addrType, nftables.TypeInetService)
}

// portReg is the register holding the port of a destination in regData.
func (f ipFamily) portReg() uint32 { return reg(4 + f.addrLen/4) }

// pinKey is the first register of a pin set key, client . destination:
// the client's address ends where regData starts.
func (f ipFamily) pinKey() uint32 { return reg(4 - f.addrLen/4) }

// pinKeyType is the pin set's key type: client . address . port . epoch.
func (f ipFamily) pinKeyType() nftables.SetDatatype {
	return nftables.MustConcatSetType(f.addrType, f.addrType, nftables.TypeInetService, nftables.TypeInteger)
}

// servicePlan is everything one virtual service puts in the kernel,
// derived from it alone (deterministically).
type servicePlan struct {
	vs        dataplane.VirtualService
	epochs    map[string]uint32 // persistent services: by destination key
	fam       ipFamily
	keep      bool // DNAT keeps the client's destination port
	chain     string
	destSet   string
	rules     []rulePlan            // of the service chain
	pinSet    string                // persistent services: the set of remembered clients
	pins      []pinPlan             // persistent services: one chain per destination
	destElems []nftables.SetElement // the dst_ set, sorted
	vmap      string                // the dispatch map holding the service's entry
	vmapKey   []byte
}

// pinPlan is the chain of one destination of a persistent service: it
// remembers the client (with that destination) and DNATs.
type pinPlan struct {
	name  string
	dest  string // key of the destination
	rules []rulePlan
}

// rulePlan is one rule of a chain.
type rulePlan struct {
	exprs   []expr.Any
	comment string
	// sched, when not nil, is the anonymous interval map (slot →
	// destination, or slot → goto pin chain) of the Lookup at
	// exprs[schedAt].
	sched   []nftables.SetElement
	schedAt int
}

// slot is a destination and how many consecutive slots of the modulus it
// owns.
type slot struct {
	dest dataplane.Destination
	n    uint32
}

// sortedDests returns the destinations ordered by address, then port.
func sortedDests(vs dataplane.VirtualService) []dataplane.Destination {
	ds := make([]dataplane.Destination, 0, len(vs.Dests))
	for _, d := range vs.Dests {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b dataplane.Destination) int {
		return netip.AddrPortFrom(a.Address, a.Port).Compare(netip.AddrPortFrom(b.Address, b.Port))
	})
	return ds
}

// slots returns the destinations that get new connections with their slot
// counts, and the modulus (their sum). rr and dh give each destination with
// weight > 0 one slot; wrr and sh give weight/gcd(weights) slots.
func slots(vs dataplane.VirtualService, ds []dataplane.Destination) ([]slot, uint32, error) {
	weighted := vs.Scheduler == "wrr" || vs.Scheduler == "sh"
	g := 0
	for _, d := range ds {
		if d.Weight > 0 {
			g = gcd(g, d.Weight)
		}
	}
	var out []slot
	var total uint64
	for _, d := range ds {
		if d.Weight <= 0 {
			continue
		}
		n := uint32(1)
		if weighted {
			n = uint32(d.Weight / g)
		}
		out = append(out, slot{dest: d, n: n})
		total += uint64(n)
	}
	if total > math.MaxUint32 {
		return nil, 0, fmt.Errorf("%s: the weights add up to more than 2^32 slots", vs.Key())
	}
	return out, uint32(total), nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// planService derives the kernel objects of vs, which must have passed
// validateService and validateDest. A persistent service needs an epoch
// (not 0) for each destination.
func planService(vs dataplane.VirtualService, epochs map[string]uint32) (*servicePlan, error) {
	keep, err := keepsPort(vs)
	if err != nil {
		return nil, err
	}
	p := &servicePlan{vs: vs, fam: familyFor(vs.Service), keep: keep, chain: chainOf(vs.Service), destSet: destsOf(vs.Service)}
	ds := sortedDests(vs)
	if vs.Timeout > 0 {
		p.epochs = map[string]uint32{}
		for _, d := range ds {
			if p.epochs[d.Key()] = epochs[d.Key()]; p.epochs[d.Key()] == 0 {
				return nil, fmt.Errorf("%s %s: no epoch", vs.Key(), d.Key())
			}
		}
	}
	for _, d := range ds {
		p.destElems = append(p.destElems, nftables.SetElement{Key: padDest(p.fam, d), Comment: formatDest(d.Weight, p.epochs[d.Key()])})
	}
	p.vmap, p.vmapKey = dispatchEntry(vs.Service)
	ss, modulus, err := slots(vs, ds)
	if err != nil {
		return nil, err
	}
	if vs.Timeout > 0 {
		p.pinSet = pinSetOf(vs.Service)
		for _, d := range ds {
			p.rules = append(p.rules, p.stickyRule(d))
			p.pins = append(p.pins, pinPlan{name: pinName(vs.Service, d), dest: d.Key(), rules: []rulePlan{p.rememberRule(d), {exprs: p.dnatTo(d)}}})
		}
	}
	if len(ss) == 0 {
		p.rules = append(p.rules, rulePlan{exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
	} else {
		p.rules = append(p.rules, p.scheduleRule(ss, modulus))
	}
	p.rules[0].comment = formatService(vs.Service)
	return p, nil
}

// padDest is a destination as address . port, each padded to whole
// registers: the form of set elements and of register data.
func padDest(f ipFamily, d dataplane.Destination) []byte {
	b := make([]byte, f.addrLen+4)
	copy(b, d.Address.AsSlice())
	binary.BigEndian.PutUint16(b[f.addrLen:], d.Port)
	return b
}

// stickyRule sends a client the pin set remembers with destination d to d,
// and refreshes the entry's timeout. The set's key is client . destination
// address . port . epoch, built in consecutive registers from pinKey on:
// the client, then the destination (which dnat then reads), then the
// destination's epoch. The epoch is drawn when the destination is added to
// the service, so a destination deleted and added again does not inherit
// the clients it had: their entries no longer match anything and expire.
func (p *servicePlan) stickyRule(d dataplane.Destination) rulePlan {
	ex := append(p.pinKeyExprs(d),
		&expr.Lookup{SourceRegister: p.fam.pinKey(), SetName: p.pinSet},
		&expr.Dynset{Operation: unix.NFT_DYNSET_OP_UPDATE, SrcRegKey: p.fam.pinKey(), SetName: p.pinSet, Timeout: p.timeout()},
		p.dnat())
	return rulePlan{exprs: ex}
}

// rememberRule adds client . d to the pin set and DNATs to d. When the set
// is full the dynset fails and the chain's next rule DNATs without
// remembering.
func (p *servicePlan) rememberRule(d dataplane.Destination) rulePlan {
	ex := append(p.pinKeyExprs(d),
		&expr.Dynset{Operation: unix.NFT_DYNSET_OP_ADD, SrcRegKey: p.fam.pinKey(), SetName: p.pinSet, Timeout: p.timeout()},
		p.dnat())
	return rulePlan{exprs: ex}
}

// pinKeyExprs load client . d . epoch from pinKey on.
func (p *servicePlan) pinKeyExprs(d dataplane.Destination) []expr.Any {
	ex := append(p.clientKey(p.fam.pinKey()), p.destImmediates(d)...)
	return append(ex, &expr.Immediate{Register: reg(5 + p.fam.addrLen/4), Data: binary.BigEndian.AppendUint32(nil, p.epochs[d.Key()])})
}

func (p *servicePlan) timeout() time.Duration { return time.Duration(p.vs.Timeout) * time.Second }

// scheduleRule picks a slot (numgen or jhash) and looks it up in an
// anonymous interval map: to the destination, which it DNATs to, or, for a
// persistent service, to a goto of the destination's pin chain.
func (p *servicePlan) scheduleRule(ss []slot, modulus uint32) rulePlan {
	ex := p.slotExprs(modulus)
	r := rulePlan{schedAt: len(ex)}
	if p.vs.Timeout > 0 {
		r.exprs = append(ex, &expr.Lookup{SourceRegister: regKey, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: anonMapName})
		r.sched = p.schedElems(ss, func(d dataplane.Destination) nftables.SetElement {
			return nftables.SetElement{VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: pinName(p.vs.Service, d)}}
		})
		return r
	}
	r.exprs = append(ex, &expr.Lookup{SourceRegister: regKey, DestRegister: regData, IsDestRegSet: true, SetName: anonMapName}, p.dnat())
	r.sched = p.schedElems(ss, func(d dataplane.Destination) nftables.SetElement {
		return nftables.SetElement{Val: padDest(p.fam, d)}
	})
	return r
}

// anonMapName is the name template the kernel numbers anonymous maps with.
const anonMapName = "__map%d"

// schedElems is the interval map of slots: one element starting each
// destination's range (with its value) and one closing the last.
func (p *servicePlan) schedElems(ss []slot, value func(dataplane.Destination) nftables.SetElement) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(ss)+1)
	var start uint32
	for _, s := range ss {
		e := value(s.dest)
		e.Key = binaryutil.BigEndian.PutUint32(start)
		out = append(out, e)
		start += s.n
	}
	return append(out, nftables.SetElement{Key: binaryutil.BigEndian.PutUint32(start), IntervalEnd: true})
}

// slotExprs leave a slot in [0, modulus) in regKey, in network byte order
// (interval maps compare keys as bytes).
func (p *servicePlan) slotExprs(modulus uint32) []expr.Any {
	var ex []expr.Any
	switch p.vs.Scheduler {
	case "sh", "dh":
		ex = nfprotoIs(p.fam) // for the nft tool: "ip saddr", not "@nh,96,32"
		off, n := p.fam.saddrOff, p.fam.addrLen
		if p.vs.Scheduler == "dh" {
			off = p.fam.daddrOff
		}
		ex = append(ex, &expr.Payload{DestRegister: regData, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: p.fam.addrLen})
		if p.vs.Scheduler == "sh" && slices.Contains(p.vs.Flags, "sh-port") {
			ex = append(ex, &expr.Payload{DestRegister: p.fam.portReg(), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2})
			n += 4
		}
		ex = append(ex, &expr.Hash{SourceRegister: regData, DestRegister: regKey, Length: n, Modulus: modulus, Seed: hashSeed, Type: expr.HashTypeJenkins})
	default: // rr, wrr
		ex = append(ex, &expr.Numgen{Register: regKey, Modulus: modulus, Type: unix.NFT_NG_INCREMENTAL})
	}
	return append(ex, &expr.Byteorder{SourceRegister: regKey, DestRegister: regKey, Op: expr.ByteorderHton, Len: 4, Size: 4})
}

// clientKey leaves the client's source address, masked to the persistence
// netmask, in register r.
func (p *servicePlan) clientKey(r uint32) []expr.Any {
	ex := append(nfprotoIs(p.fam), &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: p.fam.saddrOff, Len: p.fam.addrLen})
	bits := int(p.fam.addrLen * 8)
	if m := p.vs.Netmask; m > 0 && m < bits {
		ex = append(ex, &expr.Bitwise{SourceRegister: r, DestRegister: r, Len: p.fam.addrLen,
			Mask: prefixMask(int(p.fam.addrLen), m), Xor: make([]byte, p.fam.addrLen)})
	}
	return ex
}

func prefixMask(n, bits int) []byte {
	b := make([]byte, n)
	for i := range b {
		switch {
		case bits >= 8:
			b[i] = 0xff
			bits -= 8
		case bits > 0:
			b[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return b
}

// dnat rewrites the destination to the address (and port, unless keep)
// in regData.
func (p *servicePlan) dnat() *expr.NAT {
	// The kernel reports max = min; say so, to compare equal.
	n := &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(p.fam.nfproto), RegAddrMin: regData, RegAddrMax: regData}
	if !p.keep {
		n.RegProtoMin, n.RegProtoMax, n.Specified = p.fam.portReg(), p.fam.portReg(), true
	}
	return n
}

// dnatTo DNATs to the fixed destination d.
func (p *servicePlan) dnatTo(d dataplane.Destination) []expr.Any {
	return append(p.destImmediates(d), p.dnat())
}

// destImmediates load d into regData (address) and the port register.
func (p *servicePlan) destImmediates(d dataplane.Destination) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: regData, Data: d.Address.AsSlice()},
		&expr.Immediate{Register: p.fam.portReg(), Data: binary.BigEndian.AppendUint16(nil, d.Port)},
	}
}

// dispatchEntry returns the dispatch map and key that lead to s's chain.
func dispatchEntry(s dataplane.Service) (string, []byte) {
	six := serviceIs6(s)
	if s.Fwmark != 0 {
		return pick(six, mapFwmark6, mapFwmark4), binaryutil.NativeEndian.PutUint32(s.Fwmark)
	}
	key := []byte{protoNumbers[s.Protocol], 0, 0, 0}
	key = append(key, s.Address.AsSlice()...)
	if s.Port == 0 {
		return pick(six, mapAllPorts6, mapAllPorts4), key
	}
	key = binary.BigEndian.AppendUint16(key, s.Port)
	return pick(six, mapServices6, mapServices4), append(key, 0, 0)
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}

// parseDispatchKey is the inverse of dispatchEntry: the identity a
// dispatch map's key names.
func parseDispatchKey(mapName string, key []byte) (dataplane.Service, error) {
	var s dataplane.Service
	switch mapName {
	case mapFwmark4, mapFwmark6:
		if len(key) == 4 {
			s = dataplane.Service{Fwmark: binaryutil.NativeEndian.Uint32(key), Family: pick(mapName == mapFwmark6, "inet6", "inet")}
		}
	default:
		alen := pick(mapName == mapServices6 || mapName == mapAllPorts6, 16, 4)
		withPort := mapName == mapServices4 || mapName == mapServices6
		if len(key) == 4+alen+pick(withPort, 4, 0) && protoName(key[0]) != "" {
			addr, _ := netip.AddrFromSlice(key[4 : 4+alen])
			s = dataplane.Service{Protocol: protoName(key[0]), Address: addr, Family: familyOf(addr)}
			if withPort {
				s.Port = binary.BigEndian.Uint16(key[4+alen:])
			}
		}
	}
	// Only keys dispatchEntry writes (padding zero, mark not 0).
	if m, k := dispatchEntry(s); validateIdentity(s) != nil || m != mapName || !bytes.Equal(k, key) {
		return dataplane.Service{}, fmt.Errorf("%s: malformed key %x", mapName, key)
	}
	return s, nil
}
