package ipvs

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/mdlayher/netlink"
	moby "github.com/moby/ipvs"
)

// Destination commands go over this package's own generic netlink socket:
// moby/ipvs leaves out the destination's address family
// (IPVS_DEST_ATTR_ADDR_FAMILY), so with it the kernel takes every
// destination to be of its service's family, and a tun destination of
// the other family (IPv6 in IPv4 or IPv4 in IPv6, which the kernel
// accepts) would be written as a wrong address. Services, dumps and the
// connection timeouts stay with moby/ipvs.
const (
	cmdNewDest = 5 // IPVS_CMD_NEW_DEST
	cmdSetDest = 6 // IPVS_CMD_SET_DEST
	cmdDelDest = 7 // IPVS_CMD_DEL_DEST

	cmdAttrService = 1 // IPVS_CMD_ATTR_SERVICE, nested
	cmdAttrDest    = 2 // IPVS_CMD_ATTR_DEST, nested

	svcAttrAF       = 1 // u16
	svcAttrProtocol = 2 // u16
	svcAttrAddr     = 3 // 4 or 16 bytes
	svcAttrPort     = 4 // u16, network byte order
	svcAttrFwmark   = 5 // u32

	destAttrAddr       = 1  // 4 or 16 bytes
	destAttrPort       = 2  // u16, network byte order
	destAttrFwdMethod  = 3  // u32: IP_VS_CONN_F_MASQ / _TUNNEL / _DROUTE
	destAttrWeight     = 4  // u32
	destAttrUThresh    = 5  // u32
	destAttrLThresh    = 6  // u32
	destAttrAddrFamily = 11 // u16
)

// encodeDestCmd builds the attributes of a destination command: the
// service's identity (all the kernel looks at to find it) and the
// destination, with its own address family. A deletion needs only the
// destination's address, port and family.
func encodeDestCmd(svc *moby.Service, d *moby.Destination, full bool) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrService, func(n *netlink.AttributeEncoder) error {
		n.Uint16(svcAttrAF, svc.AddressFamily)
		if svc.FWMark != 0 {
			n.Uint32(svcAttrFwmark, svc.FWMark)
			return nil
		}
		n.Uint16(svcAttrProtocol, svc.Protocol)
		n.Bytes(svcAttrAddr, rawAddr(svc.Address))
		n.Bytes(svcAttrPort, be16(svc.Port))
		return nil
	})
	ae.Nested(cmdAttrDest, func(n *netlink.AttributeEncoder) error {
		n.Uint16(destAttrAddrFamily, d.AddressFamily)
		n.Bytes(destAttrAddr, rawAddr(d.Address))
		n.Bytes(destAttrPort, be16(d.Port))
		if full {
			n.Uint32(destAttrFwdMethod, d.ConnectionFlags&moby.ConnectionFlagFwdMask)
			n.Uint32(destAttrWeight, uint32(d.Weight))
			n.Uint32(destAttrUThresh, d.UpperThreshold)
			n.Uint32(destAttrLThresh, d.LowerThreshold)
		}
		return nil
	})
	return ae.Encode()
}

// rawAddr is an address as IPVS takes it: 4 bytes for IPv4, 16 for IPv6.
func rawAddr(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// destCmd sends one acknowledged destination command (cmdNewDest,
// cmdSetDest or cmdDelDest).
func (b *Backend) destCmd(cmd uint8, svc *moby.Service, d *moby.Destination) error {
	data, err := encodeDestCmd(svc, d, cmd != cmdDelDest)
	if err != nil {
		return fmt.Errorf("encoding destination %s: %w", d.Address, err)
	}
	return b.command(cmd, data)
}
