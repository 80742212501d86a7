package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rules and set elements are read on a socket of our own rather than with
// nftables.Conn.GetRules and GetSetElements: the library's rule parser
// silently drops expressions it does not know (byteorder among them), which
// would hide drift, and its element parser drops verdicts. Here an unknown
// expression is kept as such, so it never compares equal.

// kernelRule is one rule as the kernel returned it.
type kernelRule struct {
	chain   string
	exprs   []expr.Any
	unknown []string // names of expressions this package cannot parse
	udata   []byte
}

func nfgen(family byte) []byte { return []byte{family, unix.NFNETLINK_V0, 0, 0} }

// dumpRules returns the rules of the chains of table, by chain. It asks
// chain by chain: the kernel finds a named chain by hash, while a dump of
// the whole table restarts its walk from the first rule for every reply
// buffer, which is quadratic in the number of rules.
func dumpRules(c *netlink.Conn, table string, chains []string) (map[string][]kernelRule, error) {
	out := map[string][]kernelRule{}
	for _, chain := range chains {
		attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_RULE_TABLE, Data: []byte(table + "\x00")},
			{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
		})
		if err != nil {
			return nil, err
		}
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
			Data:   append(nfgen(unix.NFPROTO_INET), attrs...),
		})
		if err != nil {
			return nil, fmt.Errorf("dump rules of %s: %w", chain, err)
		}
		for _, m := range msgs {
			if len(m.Data) < 4 {
				continue
			}
			r, err := parseRule(m.Data[4:])
			if err != nil {
				return nil, fmt.Errorf("parse rule of %s: %w", chain, err)
			}
			out[r.chain] = append(out[r.chain], r)
		}
	}
	return out, nil
}

func parseRule(b []byte) (kernelRule, error) {
	var r kernelRule
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return r, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			r.chain = ad.String()
		case unix.NFTA_RULE_USERDATA:
			r.udata = ad.Bytes()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.NFTA_LIST_ELEM {
						nad.Nested(func(ead *netlink.AttributeDecoder) error { return r.parseExpr(ead) })
					}
				}
				return nil
			})
		}
	}
	return r, ad.Err()
}

func (r *kernelRule) parseExpr(ad *netlink.AttributeDecoder) error {
	var name string
	var data []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ad.String()
		case unix.NFTA_EXPR_DATA:
			data = ad.Bytes()
		}
	}
	if name == "byteorder" { // the library cannot unmarshal it
		e, err := parseByteorder(data)
		if err != nil {
			return err
		}
		r.exprs = append(r.exprs, e)
		return nil
	}
	e := newExpr(name)
	if e == nil {
		r.unknown = append(r.unknown, name)
		return nil
	}
	if err := expr.Unmarshal(unix.NFPROTO_INET, data, e); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// A verdict is an immediate into the verdict register.
	if imm, ok := e.(*expr.Immediate); ok && imm.Register == unix.NFT_REG_VERDICT && len(imm.Data) == 0 {
		v := &expr.Verdict{}
		if err := expr.Unmarshal(unix.NFPROTO_INET, data, v); err != nil {
			return fmt.Errorf("verdict: %w", err)
		}
		e = v
	}
	r.exprs = append(r.exprs, e)
	return nil
}

// newExpr returns an empty expression of the kinds raftlb writes.
func newExpr(name string) expr.Any {
	switch name {
	case "meta":
		return &expr.Meta{}
	case "cmp":
		return &expr.Cmp{}
	case "payload":
		return &expr.Payload{}
	case "bitwise":
		return &expr.Bitwise{}
	case "numgen":
		return &expr.Numgen{}
	case "hash":
		return &expr.Hash{}
	case "lookup":
		return &expr.Lookup{}
	case "dynset":
		return &expr.Dynset{}
	case "nat":
		return &expr.NAT{}
	case "immediate":
		return &expr.Immediate{}
	}
	return nil
}

func parseByteorder(b []byte) (*expr.Byteorder, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	e := &expr.Byteorder{}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_BYTEORDER_SREG:
			e.SourceRegister = ad.Uint32()
		case unix.NFTA_BYTEORDER_DREG:
			e.DestRegister = ad.Uint32()
		case unix.NFTA_BYTEORDER_OP:
			e.Op = expr.ByteorderOp(ad.Uint32())
		case unix.NFTA_BYTEORDER_LEN:
			e.Len = ad.Uint32()
		case unix.NFTA_BYTEORDER_SIZE:
			e.Size = ad.Uint32()
		}
	}
	return e, ad.Err()
}

// genID returns the ruleset generation, which every committed transaction
// increments.
func genID(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC),
	})
	if err != nil {
		return 0, fmt.Errorf("ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("ruleset generation: no NFTA_GEN_ID in the reply")
}

// kernelElem is one set element as the kernel returned it.
type kernelElem struct {
	key, val []byte
	verdict  *expr.Verdict // for verdict maps
	flags    uint32
	udata    []byte
}

func (e kernelElem) intervalEnd() bool { return e.flags&unix.NFT_SET_ELEM_INTERVAL_END != 0 }

// dumpElems returns the elements of set. (nftables.Conn.GetSetElements
// drops verdicts.)
func dumpElems(c *netlink.Conn, table, set string) ([]kernelElem, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(table + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(set + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request | netlink.Dump},
		Data:   append(nfgen(unix.NFPROTO_INET), attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("dump elements of %s: %w", set, err)
	}
	var out []kernelElem
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			ad.Nested(func(lad *netlink.AttributeDecoder) error {
				for lad.Next() {
					if lad.Type() == unix.NFTA_LIST_ELEM {
						var e kernelElem
						lad.Nested(e.parse)
						out = append(out, e)
					}
				}
				return nil
			})
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("parse elements of %s: %w", set, err)
		}
	}
	return out, nil
}

func (e *kernelElem) parse(ad *netlink.AttributeDecoder) error {
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			ad.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() == unix.NFTA_DATA_VALUE {
						e.key = d.Bytes()
					}
				}
				return nil
			})
		case unix.NFTA_SET_ELEM_DATA:
			ad.Nested(e.parseData)
		case unix.NFTA_SET_ELEM_FLAGS:
			e.flags = ad.Uint32()
		case unix.NFTA_SET_ELEM_USERDATA:
			e.udata = ad.Bytes()
		}
	}
	return nil
}

func (e *kernelElem) parseData(d *netlink.AttributeDecoder) error {
	for d.Next() {
		switch d.Type() {
		case unix.NFTA_DATA_VALUE:
			e.val = d.Bytes()
		case unix.NFTA_DATA_VERDICT:
			v := &expr.Verdict{}
			d.Nested(func(vd *netlink.AttributeDecoder) error {
				for vd.Next() {
					switch vd.Type() {
					case unix.NFTA_VERDICT_CODE:
						v.Kind = expr.VerdictKind(int32(vd.Uint32()))
					case unix.NFTA_VERDICT_CHAIN:
						v.Chain = vd.String()
					}
				}
				return nil
			})
			e.verdict = v
		}
	}
	return nil
}
