package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
)

// linkNet carries the raft connections of test nodes over one proxy per
// direction (dialling node, target address), so that a test can cut a node
// off from the others. A cut link forwards nothing and closes nothing, as
// a pulled cable or a dropping firewall: what was written before or during
// the cut is delivered once the link is back (TCP retransmits it), and a
// read or write waits, up to its deadline, in the meantime.
type linkNet struct {
	t      *testing.T
	mu     sync.Mutex
	open   *sync.Cond          // signalled on heal and close; L is mu
	links  map[[2]string]*link // by {from node ID, to address}; guarded by mu
	cutIDs map[string]bool     // nodes cut off, by ID (their outbound links); guarded by mu
	cutTo  map[string]bool     // and by address (their inbound links); guarded by mu
	conns  []net.Conn          // both ends of every forwarded connection; guarded by mu
	closed bool                // guarded by mu
	wg     sync.WaitGroup
}

type link struct {
	from, to string
	ln       net.Listener
}

func newLinkNet(t *testing.T) *linkNet {
	n := &linkNet{t: t, links: make(map[[2]string]*link), cutIDs: make(map[string]bool), cutTo: make(map[string]bool)}
	n.open = sync.NewCond(&n.mu)
	t.Cleanup(n.close)
	return n
}

// dialer is the Config.dial of node id: every connection it makes goes
// over the link from id to the address it dials.
func (n *linkNet) dialer(id string) func(ctx context.Context, address string) (net.Conn, error) {
	return func(ctx context.Context, address string) (net.Conn, error) {
		l, err := n.link(id, address)
		if err != nil {
			return nil, err
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", l.ln.Addr().String())
	}
}

// withLinks is a startNode/startCluster modifier that puts the node on n.
func (n *linkNet) withLinks(c *Config) { c.dial = n.dialer(c.NodeID) }

// cut cuts node off: every link from it and to it stops forwarding.
func (n *linkNet) cut(node *testNode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutIDs[node.ID()], n.cutTo[node.Addr()] = true, true
}

// heal undoes cut: the links forward again, starting with what they held.
func (n *linkNet) heal(node *testNode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cutIDs, node.ID())
	delete(n.cutTo, node.Addr())
	n.open.Broadcast()
}

// waitOpen blocks while the link from→to is cut; false once n is closed.
func (n *linkNet) waitOpen(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for !n.closed && (n.cutIDs[from] || n.cutTo[to]) {
		n.open.Wait()
	}
	return !n.closed
}

// link returns the proxy from node from to address to, starting it on
// first use.
func (n *linkNet) link(from, to string) (*link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("linkNet closed")
	}
	key := [2]string{from, to}
	if l := n.links[key]; l != nil {
		return l, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &link{from: from, to: to, ln: ln}
	n.links[key] = l
	n.wg.Add(1)
	go n.serve(l)
	return l, nil
}

// serve accepts the connections of link l and forwards each to its target.
func (n *linkNet) serve(l *link) {
	defer n.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.to)
		if err != nil {
			c.Close() // the target is down: as a refused connection
			continue
		}
		n.mu.Lock()
		n.conns = append(n.conns, c, up)
		n.mu.Unlock()
		n.wg.Add(2)
		go n.pipe(l, up, c)
		go n.pipe(l, c, up)
	}
}

// pipe copies src to dst while the link is open. Bytes read during a cut
// are held until it heals, and so is the end of the stream.
func (n *linkNet) pipe(l *link, dst, src net.Conn) {
	defer n.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		k, err := src.Read(buf)
		if !n.waitOpen(l.from, l.to) {
			return
		}
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops every link and closes their connections.
func (n *linkNet) close() {
	n.mu.Lock()
	n.closed = true
	for _, l := range n.links {
		l.ln.Close()
	}
	for _, c := range n.conns {
		c.Close()
	}
	n.open.Broadcast()
	n.mu.Unlock()
	n.wg.Wait()
}
