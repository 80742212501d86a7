package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Set definitions. Each is a function of the table and the family only, so
// re-adding an existing set (NLM_F_CREATE without EXCL) is a no-op.

func dispatchMapDef(t *nftables.Table, name string) *nftables.Set {
	s := &nftables.Set{Table: t, Name: name, IsMap: true, DataType: nftables.TypeVerdict}
	switch name {
	case mapFwmark4, mapFwmark6:
		s.KeyType, s.KeyByteOrder = nftables.TypeMark, binaryutil.NativeEndian
	case mapServices4:
		s.KeyType, s.Concatenation = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIPAddr, nftables.TypeInetService), true
	case mapServices6:
		s.KeyType, s.Concatenation = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIP6Addr, nftables.TypeInetService), true
	case mapAllPorts4:
		s.KeyType, s.Concatenation = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIPAddr), true
	case mapAllPorts6:
		s.KeyType, s.Concatenation = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeIP6Addr), true
	}
	return s
}

// destSetDef is a service's dst_ set: every destination (weight 0 too) as
// address . port, its weight in the element's comment.
func destSetDef(t *nftables.Table, name string, f ipFamily) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: f.destType(), Concatenation: true}
}

// pinSetDef is the per_ set of a persistent service: client (masked
// source address) . destination address . port . epoch, each entry
// expiring after the persistence timeout unless a new connection refreshes
// it.
func pinSetDef(t *nftables.Table, name string, f ipFamily) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, HasTimeout: true, Dynamic: true, Concatenation: true,
		KeyType: f.pinKeyType(), Size: persistSize}
}

// schedMapDef is the anonymous interval map of a schedule rule, slot →
// destination or, with verdicts, slot → goto pin chain (bound to the rule:
// replaced with it, freed with it).
func schedMapDef(t *nftables.Table, f ipFamily, id uint32, verdicts bool) *nftables.Set {
	s := &nftables.Set{Table: t, Name: anonMapName, ID: id, Anonymous: true, Constant: true, Interval: true, IsMap: true,
		KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.BigEndian, DataType: f.destType()}
	if verdicts {
		s.DataType = nftables.TypeVerdict
	}
	return s
}

// baseChainDefs are the two NAT base chains: prerouting for traffic
// arriving at the director, output for connections the director itself
// opens to a virtual service.
func baseChainDefs(t *nftables.Table) []*nftables.Chain {
	return []*nftables.Chain{
		{Table: t, Name: chainPrerouting, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
		{Table: t, Name: chainOutput, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest},
	}
}

// baseRules are the dispatch rules of both base chains, one lookup per
// dispatch map, in IPVS's order of precedence.
func baseRules() [][]expr.Any {
	var out [][]expr.Any
	for _, f := range []ipFamily{ipv4, ipv6} {
		six := f.nfproto == unix.NFPROTO_IPV6
		out = append(out, append(nfprotoIs(f),
			&expr.Meta{Key: expr.MetaKeyMARK, Register: regKey},
			verdictLookup(pick(six, mapFwmark6, mapFwmark4))))
	}
	for _, f := range []ipFamily{ipv4, ipv6} {
		six := f.nfproto == unix.NFPROTO_IPV6
		out = append(out, append(nfprotoIs(f), append(protoAddr(f),
			&expr.Payload{DestRegister: reg(1 + f.addrLen/4), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			verdictLookup(pick(six, mapServices6, mapServices4)))...))
	}
	for _, f := range []ipFamily{ipv4, ipv6} {
		six := f.nfproto == unix.NFPROTO_IPV6
		out = append(out, append(nfprotoIs(f), append(protoAddr(f),
			verdictLookup(pick(six, mapAllPorts6, mapAllPorts4)))...))
	}
	return out
}

func nfprotoIs(f ipFamily) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regKey},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regKey, Data: []byte{f.nfproto}},
	}
}

// protoAddr loads l4proto . daddr into regKey onwards.
func protoAddr(f ipFamily) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regKey},
		&expr.Payload{DestRegister: reg(1), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
	}
}

func verdictLookup(set string) *expr.Lookup {
	return &expr.Lookup{SourceRegister: regKey, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true, SetName: set}
}

// commentData is rule user data holding comment, as the nft tool writes it.
func commentData(comment string) []byte {
	if comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, comment)
}

// parseComment reads the comment from rule user data (bounds-checked: the
// data may have been written by anyone).
func parseComment(ud []byte) (string, bool) {
	for len(ud) >= 2 {
		typ, n := ud[0], int(ud[1])
		if len(ud) < 2+n {
			return "", false
		}
		if userdata.Type(typ) == userdata.TypeComment && n > 0 && ud[2+n-1] == 0 {
			return string(ud[2 : 2+n-1]), true
		}
		ud = ud[2+n:]
	}
	return "", false
}
