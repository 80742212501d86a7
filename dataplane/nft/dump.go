package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/raftlb/raftlb/dataplane"
	"golang.org/x/sys/unix"
)

// Dump reads raftlb's table and returns the services it holds.
//
// A service is returned with its parameters and destinations only when
// every kernel object of it is exactly what Apply would write for them:
// the description is decoded (rule comment, dst_ set), the objects are
// generated again from it, and the rules (expression by expression), the
// schedule maps, the sets, the dispatch entry and the base chains are
// compared. A service with some objects present but not all matching (a
// rule deleted or edited, a set flushed, the base chains gone) is returned
// with its identity only: Scheduler "" and no destinations, so that the
// reconciler's diff updates it and Apply rewrites all of it. A service with
// nothing left is absent. The pin sets' entries (remembered clients) are
// not read.
//
// The reads are bracketed by the ruleset generation and repeated if a
// transaction committed in between.
func (b *Backend) Dump() (tbl dataplane.Table, err error) {
	defer func() {
		if r := recover(); r != nil { // malformed kernel data must not kill the director
			tbl, err = nil, fmt.Errorf("nft: dump: %v", r)
			_ = b.reconnect()
		}
	}()
	for range 3 {
		snap, stable, err := b.snapshot()
		if err != nil {
			_ = b.reconnect()
			return nil, fmt.Errorf("nft: dump: %w", err)
		}
		if !stable {
			continue
		}
		tbl, states, baseOK := snap.build(b.t)
		b.state, b.baseOK, b.dumped = states, baseOK, true
		b.drift = snap.drift
		return tbl, nil
	}
	return nil, errors.New("nft: dump: the ruleset changed during each of 3 reads")
}

// snapshot is raftlb's table as read from the kernel.
type snapshot struct {
	exists bool
	chains map[string]*nftables.Chain
	sets   map[string]*nftables.Set
	elems  map[string][]kernelElem // every set's but the pin sets'
	rules  map[string][]kernelRule // by chain
	pins   map[string][]string     // see pinsBySuffix
	drift  map[string]string       // why a service is a placeholder, by key
}

// snapshot reads the table; stable is false if the ruleset changed while
// it was read.
func (b *Backend) snapshot() (s *snapshot, stable bool, err error) {
	if err := b.ensureConn(); err != nil {
		return nil, false, err
	}
	b.deadline()
	g1, err := genID(b.raw)
	if err != nil {
		return nil, false, err
	}
	s, err = b.read()
	if err != nil {
		return nil, false, err
	}
	g2, err := genID(b.raw)
	if err != nil {
		return nil, false, err
	}
	return s, g1 == g2, nil
}

func (b *Backend) read() (*snapshot, error) {
	s := &snapshot{chains: map[string]*nftables.Chain{}, sets: map[string]*nftables.Set{},
		elems: map[string][]kernelElem{}, rules: map[string][]kernelRule{}}
	tables, err := b.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		s.exists = s.exists || t.Name == tableName
	}
	if !s.exists {
		return s, nil
	}
	chains, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == tableName {
			s.chains[c.Name] = c
		}
	}
	sets, err := b.conn.GetSets(b.t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, set := range sets {
		s.sets[set.Name] = set
		if strings.HasPrefix(set.Name, prefixPin) {
			continue // remembered clients
		}
		if s.elems[set.Name], err = dumpElems(b.raw, tableName, set.Name); err != nil {
			return nil, err
		}
	}
	if s.rules, err = dumpRules(b.raw, tableName, slices.Sorted(maps.Keys(s.chains))); err != nil {
		return nil, err
	}
	return s, nil
}

// build turns the snapshot into the table Dump returns, the backend's
// state, and whether the base chains and maps are intact.
func (s *snapshot) build(t *nftables.Table) (dataplane.Table, map[string]*svcState, bool) {
	tbl, states := dataplane.Table{}, map[string]*svcState{}
	if !s.exists {
		return tbl, states, false
	}
	baseErr := s.baseErr(t)
	baseOK := baseErr == nil
	entries := s.dispatchEntries()
	for sfx, id := range s.identities(entries) {
		vs, st := s.service(id, entries[sfx], baseErr)
		tbl[vs.Key()] = vs
		states[vs.Key()] = st
	}
	return tbl, states, baseOK
}

// dispatchEntries returns, by service suffix, what the dispatch maps hold.
func (s *snapshot) dispatchEntries() map[string]dispatchEntryState {
	out := map[string]dispatchEntryState{}
	for _, name := range baseMaps {
		for _, e := range s.elems[name] {
			id, err := parseDispatchKey(name, e.key)
			if err != nil {
				continue // cannot name a service, so cannot reach one of ours either
			}
			st := elemForeign
			if e.verdict != nil && e.verdict.Kind == expr.VerdictGoto && e.verdict.Chain == chainOf(id) && e.val == nil {
				st = elemOurs
			}
			out[suffix(id)] = dispatchEntryState{id: id, state: st}
		}
	}
	return out
}

type dispatchEntryState struct {
	id    dataplane.Service
	state elemState
}

// identities returns every service some object names: a chain, a set, or a
// dispatch entry.
func (s *snapshot) identities(entries map[string]dispatchEntryState) map[string]dataplane.Service {
	ids := map[string]dataplane.Service{}
	add := func(name, prefix string) {
		if sfx, ok := strings.CutPrefix(name, prefix); ok {
			if id, ok := parseSuffix(sfx); ok {
				ids[sfx] = id
			}
		}
	}
	for name := range s.chains {
		add(name, prefixChain)
	}
	for name := range s.sets {
		add(name, prefixDests)
		add(name, prefixPin)
	}
	for sfx := range s.pinsBySuffix() {
		id, _ := parseSuffix(sfx)
		ids[sfx] = id
	}
	for sfx, e := range entries {
		ids[sfx] = e.id
	}
	return ids
}

// pinsBySuffix returns the names of the pin chains by service suffix,
// sorted.
func (s *snapshot) pinsBySuffix() map[string][]string {
	if s.pins != nil {
		return s.pins
	}
	s.pins = map[string][]string{}
	for name := range s.chains {
		if sfx, ok := pinService(name); ok {
			s.pins[sfx] = append(s.pins[sfx], name)
		}
	}
	for _, names := range s.pins {
		slices.Sort(names)
	}
	return s.pins
}

// service verifies one service; see Dump.
func (s *snapshot) service(id dataplane.Service, entry dispatchEntryState, baseErr error) (dataplane.VirtualService, *svcState) {
	pins := s.pinsBySuffix()[suffix(id)]
	vs, epochs, err := s.decode(id)
	if err == nil {
		err = baseErr
	}
	if err == nil && entry.state != elemOurs {
		err = errors.New("no dispatch entry")
	}
	if err == nil {
		err = s.verify(vs, epochs)
	}
	if err != nil {
		if s.drift == nil {
			s.drift = map[string]string{}
		}
		s.drift[id.Key()] = err.Error()
		ph := dataplane.VirtualService{Service: identity(id), Dests: map[string]dataplane.Destination{}}
		return ph, &svcState{elem: entry.state, pins: pins}
	}
	return vs, &svcState{ok: true, elem: elemOurs, pins: pins, epochs: epochs}
}

// decode reads a service's description: the comment of the first rule of
// its chain and the elements of its dst_ set.
func (s *snapshot) decode(id dataplane.Service) (dataplane.VirtualService, map[string]uint32, error) {
	var vs dataplane.VirtualService
	rules := s.rules[chainOf(id)]
	if _, ok := s.chains[chainOf(id)]; !ok || len(rules) == 0 {
		return vs, nil, errors.New("no chain or no rules")
	}
	comment, ok := parseComment(rules[0].udata)
	if !ok {
		return vs, nil, errors.New("no description")
	}
	svc, err := parseService(id, comment)
	if err == nil {
		err = validateService(svc)
	}
	if err != nil {
		return vs, nil, err
	}
	vs = dataplane.VirtualService{Service: svc, Dests: map[string]dataplane.Destination{}}
	epochs := map[string]uint32{}
	for _, e := range s.elems[destsOf(id)] {
		d, epoch, err := decodeDest(svc, e)
		if err != nil {
			return vs, nil, err
		}
		vs.Dests[d.Key()] = d
		if epoch != 0 {
			epochs[d.Key()] = epoch
		}
	}
	return vs, epochs, nil
}

// decodeDest reads one element of a dst_ set.
func decodeDest(svc dataplane.Service, e kernelElem) (dataplane.Destination, uint32, error) {
	f := familyFor(svc)
	if len(e.key) != int(f.addrLen)+4 {
		return dataplane.Destination{}, 0, fmt.Errorf("destination element %x", e.key)
	}
	addr, _ := netip.AddrFromSlice(e.key[:f.addrLen])
	d := dataplane.Destination{Address: addr, Port: binary.BigEndian.Uint16(e.key[f.addrLen:]), Forward: "nat"}
	c, _ := parseComment(e.udata)
	var epoch uint32
	var err error
	if d.Weight, epoch, err = parseDest(c); err != nil {
		return d, 0, err
	}
	if (epoch != 0) != (svc.Timeout > 0) {
		return d, 0, fmt.Errorf("destination %s: epoch %d in a service with persistence %d", d.Key(), epoch, svc.Timeout)
	}
	return d, epoch, validateDest(svc, d)
}

// verify compares the kernel's objects of vs with the ones Apply writes.
func (s *snapshot) verify(vs dataplane.VirtualService, epochs map[string]uint32) error {
	p, err := planService(vs, epochs)
	if err != nil {
		return err
	}
	ds, ok := s.sets[p.destSet]
	if !ok || !sameSetDef(ds, destSetDef(nil, p.destSet, p.fam)) {
		return errors.New("dst set differs")
	}
	if !sameElems(s.elems[p.destSet], p.destElems) {
		return errors.New("dst elements differ")
	}
	if err := s.verifyPins(p); err != nil {
		return err
	}
	return s.sameRules(p.chain, p.rules, p.fam)
}

// verifyPins compares the pin set and chains of a service.
func (s *snapshot) verifyPins(p *servicePlan) error {
	set, has := s.sets[pinSetOf(p.vs.Service)]
	if has != (p.pinSet != "") || (has && !sameSetDef(set, pinSetDef(nil, p.pinSet, p.fam))) {
		return errors.New("pin set differs")
	}
	var names []string
	for _, pin := range p.pins {
		names = append(names, pin.name)
		if err := s.sameRules(pin.name, pin.rules, p.fam); err != nil {
			return err
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, s.pinsBySuffix()[suffix(p.vs.Service)]) {
		return errors.New("persistence objects differ")
	}
	return nil
}

// sameRules compares the rules of a chain.
func (s *snapshot) sameRules(chain string, want []rulePlan, f ipFamily) error {
	if _, ok := s.chains[chain]; !ok {
		return fmt.Errorf("no chain %s", chain)
	}
	rules := s.rules[chain]
	if len(rules) != len(want) {
		return fmt.Errorf("chain %s: %d rules, want %d", chain, len(rules), len(want))
	}
	for i, w := range want {
		if err := s.sameRule(rules[i], w, f); err != nil {
			return fmt.Errorf("chain %s rule %d: %w", chain, i, err)
		}
	}
	return nil
}

// sameRule compares a kernel rule with a planned one, including the
// contents of its anonymous schedule map.
func (s *snapshot) sameRule(k kernelRule, want rulePlan, f ipFamily) error {
	if len(k.unknown) > 0 {
		return fmt.Errorf("unexpected expressions %v", k.unknown)
	}
	if !bytes.Equal(k.udata, commentData(want.comment)) {
		return errors.New("comment differs")
	}
	if len(k.exprs) != len(want.exprs) {
		return fmt.Errorf("%d expressions, want %d", len(k.exprs), len(want.exprs))
	}
	for i := range want.exprs {
		got, exp := k.exprs[i], want.exprs[i]
		if want.sched != nil && i == want.schedAt {
			l, ok := got.(*expr.Lookup)
			if !ok || !strings.HasPrefix(l.SetName, "__map") {
				return errors.New("schedule lookup differs")
			}
			m, ok := s.sets[l.SetName]
			verdicts := exp.(*expr.Lookup).DestRegister == unix.NFT_REG_VERDICT
			if !ok || !sameSetDef(m, schedMapDef(nil, f, 0, verdicts)) || !sameElems(s.elems[l.SetName], want.sched) {
				return errors.New("schedule map differs")
			}
			got, exp = anonymized(got), anonymized(exp)
		}
		if !sameExpr(got, exp) {
			return fmt.Errorf("expression %d differs: %#v, want %#v", i, got, exp)
		}
	}
	return nil
}

// anonymized is a lookup with the anonymous set's name removed.
func anonymized(e expr.Any) expr.Any {
	l := *e.(*expr.Lookup)
	l.SetName = ""
	return &l
}

// sameExpr compares two expressions by their netlink encoding, ignoring
// the set IDs that only mean something inside the batch that sent them.
func sameExpr(a, b expr.Any) bool {
	ea, err1 := expr.Marshal(unix.NFPROTO_INET, withoutSetID(a))
	eb, err2 := expr.Marshal(unix.NFPROTO_INET, withoutSetID(b))
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

func withoutSetID(e expr.Any) expr.Any {
	switch v := e.(type) {
	case *expr.Lookup:
		c := *v
		c.SetID = 0
		return &c
	case *expr.Dynset:
		c := *v
		c.SetID = 0
		return &c
	}
	return e
}

// sameSetDef compares the properties of a set that raftlb chooses.
// (The library reads a verdict map's key type wrongly, so dispatch maps
// are checked by their flags and their keys' lengths only.)
func sameSetDef(got, want *nftables.Set) bool {
	flags := got.Anonymous == want.Anonymous && got.Constant == want.Constant && got.Interval == want.Interval &&
		got.IsMap == want.IsMap && got.HasTimeout == want.HasTimeout && got.Dynamic == want.Dynamic &&
		got.Concatenation == want.Concatenation
	if want.IsMap && want.DataType.GetNFTMagic() == nftables.TypeVerdict.GetNFTMagic() {
		return flags // keys checked by the elements' lengths
	}
	return flags && got.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && got.KeyType.Bytes == want.KeyType.Bytes &&
		(!want.IsMap || (got.DataType.GetNFTMagic() == want.DataType.GetNFTMagic() && got.DataType.Bytes == want.DataType.Bytes))
}

// sameElems compares set elements as unordered lists of key, data,
// interval end flag and comment.
func sameElems(got []kernelElem, want []nftables.SetElement) bool {
	if len(got) != len(want) {
		return false
	}
	g := make([]string, len(got))
	for i, e := range got {
		g[i] = elemString(e.key, e.val, e.verdict, e.intervalEnd(), e.udata)
	}
	w := make([]string, len(want))
	for i, e := range want {
		w[i] = elemString(e.Key, e.Val, e.VerdictData, e.IntervalEnd, commentData(e.Comment))
	}
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// elemString encodes an element for comparison (one to one: every field
// is length-prefixed).
func elemString(key, val []byte, v *expr.Verdict, end bool, udata []byte) string {
	var b []byte
	for _, f := range [][]byte{key, val, udata} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	if v != nil {
		b = binary.AppendVarint(append(b, 'v'), int64(v.Kind))
		b = append(binary.AppendUvarint(b, uint64(len(v.Chain))), v.Chain...)
	}
	if end {
		b = append(b, 'e')
	}
	return string(b)
}

// baseErr checks the base chains (hook, type, priority, rules) and that the
// dispatch maps exist.
func (s *snapshot) baseErr(t *nftables.Table) error {
	want := baseRules()
	for _, def := range baseChainDefs(t) {
		c, ok := s.chains[def.Name]
		if !ok || c.Type != def.Type || c.Hooknum == nil || *c.Hooknum != *def.Hooknum || c.Priority == nil || *c.Priority != *def.Priority ||
			(c.Policy != nil && *c.Policy != nftables.ChainPolicyAccept) {
			return fmt.Errorf("base chain %s differs", def.Name)
		}
		rules := s.rules[def.Name]
		if len(rules) != len(want) {
			return fmt.Errorf("base chain %s has %d rules, want %d", def.Name, len(rules), len(want))
		}
		for i, r := range rules {
			if err := s.sameRule(r, rulePlan{exprs: want[i]}, ipv4); err != nil {
				return fmt.Errorf("base chain %s rule %d: %w", def.Name, i, err)
			}
		}
	}
	for _, name := range baseMaps {
		m, ok := s.sets[name]
		if !ok || !m.IsMap || m.Anonymous || m.Constant || m.Interval || m.HasTimeout {
			return fmt.Errorf("dispatch map %s differs", name)
		}
	}
	return nil
}
