package gossip

import (
	"net"

	"github.com/hashicorp/memberlist"
)

type memberlistNode struct {
	Name string
	Addr net.IP
	Port uint16
	Meta []byte
}

func (n *memberlistNode) mk() *memberlist.Node {
	return &memberlist.Node{Name: n.Name, Addr: n.Addr, Port: n.Port, Meta: n.Meta}
}
