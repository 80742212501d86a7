package nft

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/raftlb/raftlb/dataplane"
	"golang.org/x/sys/unix"
)

// opTimeout bounds every netlink exchange, so that a confused socket cannot
// hang the reconciler.
const opTimeout = 30 * time.Second

// sockBuf is the forced send and receive buffer size of the netlink
// sockets: a batch must fit in the send buffer, and the kernel queues every
// acknowledgement of a batch before the first is read.
const sockBuf = 256 << 20

// Option configures New.
type Option func(*Backend) error

// WithNetNSFd programs the network namespace fd refers to instead of the
// calling thread's. The caller keeps fd open while the Backend lives.
func WithNetNSFd(fd int) Option {
	return func(b *Backend) error {
		b.nsFd = fd
		return nil
	}
}

// WithNetNSPath programs the network namespace at path (such as
// /run/netns/NAME). New opens it and Close closes it.
func WithNetNSPath(path string) Option {
	return func(b *Backend) error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("nft: open network namespace %s: %w", path, err)
		}
		b.nsFd, b.ownFd = fd, true
		return nil
	}
}

// Backend programs nftables in one network namespace (see the package
// documentation for the rule layout). Only one goroutine may call it.
type Backend struct {
	nsFd  int // 0: the calling thread's namespace
	ownFd bool

	conn *nftables.Conn // lasting socket: transactions; table, chain and set listings
	nl   *netlink.Conn  // conn's socket (for deadlines)
	raw  *netlink.Conn  // our own socket: rule, element and generation dumps
	t    *nftables.Table

	// state is, by service key, what is known of the service's kernel
	// objects (see svcState: handles and kernel data, not the desired
	// state, which is the reconciler's cache alone).
	state  map[string]*svcState
	dumped bool // state is complete (a Dump ran)
	baseOK bool // the base chains and maps are known good

	// drift says, by service key, why the last Dump returned a service
	// with its identity only.
	drift map[string]string

	// lastMsgs is the number of netlink messages of the last transaction
	// sent (tests and benchmarks).
	lastMsgs int
}

var _ dataplane.Backend = (*Backend)(nil)

// New returns a Backend for the calling thread's network namespace, or the
// one an option names. It checks, with a transaction that leaves nothing
// behind, that the kernel has everything the rules use (nf_tables with inet
// NAT, numgen, jhash, dynamic timed sets); if not, the error wraps
// dataplane.ErrUnsupported and names what failed.
func New(opts ...Option) (*Backend, error) {
	b := &Backend{t: &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}, state: map[string]*svcState{}}
	for _, o := range opts {
		if err := o(b); err != nil {
			b.Close()
			return nil, err
		}
	}
	if err := b.connect(); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.probe(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Name is "nft".
func (b *Backend) Name() string { return "nft" }

// Capabilities says what this backend can express (see the package-level
// Capabilities).
func (b *Backend) Capabilities() dataplane.Capabilities { return Capabilities() }

// DriftReasons says, by service key, why the last Dump returned those
// services with their identity only (for logs).
func (b *Backend) DriftReasons() map[string]string { return maps.Clone(b.drift) }

// SetTimeouts does nothing: connection timeouts are conntrack's, which
// raftlb leaves to the system.
func (b *Backend) SetTimeouts(dataplane.Timeouts) error { return nil }

// Close closes the sockets (and the namespace fd New opened). What was
// programmed stays, so a restarting director keeps forwarding.
func (b *Backend) Close() error {
	b.disconnect()
	if b.ownFd {
		b.ownFd = false
		return unix.Close(b.nsFd)
	}
	return nil
}

func (b *Backend) connect() error {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(b.nsFd), nftables.WithSockOptions(func(c *netlink.Conn) error {
		b.nl = c
		return tuneSocket(c)
	}))
	if err != nil {
		return unsupported("netlink socket", err)
	}
	b.conn = conn
	b.raw, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: b.nsFd})
	if err != nil {
		return unsupported("netlink socket", err)
	}
	return tuneSocket(b.raw)
}

// ensureConn reconnects if an earlier reconnect failed.
func (b *Backend) ensureConn() error {
	if b.conn != nil && b.raw != nil {
		return nil
	}
	b.disconnect()
	return b.connect()
}

func (b *Backend) disconnect() {
	if b.conn != nil {
		_ = b.conn.CloseLasting()
		b.conn, b.nl = nil, nil
	}
	if b.raw != nil {
		_ = b.raw.Close()
		b.raw = nil
	}
}

// reconnect replaces the sockets after an error: a timed-out or aborted
// exchange may leave replies queued that would confuse the next one.
func (b *Backend) reconnect() error {
	b.disconnect()
	return b.connect()
}

// deadline bounds the next netlink exchanges.
func (b *Backend) deadline() {
	t := time.Now().Add(opTimeout)
	if b.nl != nil {
		_ = b.nl.SetDeadline(t)
	}
	if b.raw != nil {
		_ = b.raw.SetDeadline(t)
	}
}

// tuneSocket asks for error messages from the kernel and forces buffers
// large enough for big batches (root only; without it the defaults stay).
func tuneSocket(c *netlink.Conn) error {
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf)
	})
	return nil
}

func unsupported(what string, err error) error {
	if errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("%w: nftables %s: %v", dataplane.ErrUnsupported, what, err)
	}
	return fmt.Errorf("nft: %s: %w", what, err)
}

// probe checks the kernel by building, in one transaction, a throwaway
// table with the base chains and two services that use every expression
// raftlb generates, and deleting it again: the kernel validates and loads
// modules for all of it, and nothing stays.
func (b *Backend) probe() error {
	t := &nftables.Table{Name: tableName + "_probe", Family: nftables.TableFamilyINet}
	b.conn.CreateTable(t) // fails rather than touch a table of that name that is not ours
	err := writeProbe(&txn{c: b.conn, t: t})
	if err == nil {
		b.conn.DelTable(t)
		b.deadline()
		err = b.conn.Flush()
	}
	if err == nil {
		return nil
	}
	_ = b.reconnect()
	if errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("nft: %w (needs CAP_NET_ADMIN)", err)
	}
	return fmt.Errorf("%w: nftables lacks what raftlb's rules use (inet nat, numgen, jhash, dynamic timed sets): %v", dataplane.ErrUnsupported, err)
}

// writeProbe writes the probe's base chains and services: a persistent
// IPv4 wrr service with a netmask, and an IPv6 fwmark sh service with
// sh-port that keeps the client's port.
func writeProbe(x *txn) error {
	persistent := dataplane.VirtualService{
		Service: dataplane.Service{Protocol: "tcp", Address: netip.MustParseAddr("192.0.2.1"), Port: 80, Family: "inet", Scheduler: "wrr", Timeout: 60, Netmask: 24},
		Dests:   map[string]dataplane.Destination{"192.0.2.2:80": {Address: netip.MustParseAddr("192.0.2.2"), Port: 80, Weight: 1, Forward: "nat"}},
	}
	hashed := dataplane.VirtualService{
		Service: dataplane.Service{Fwmark: 1, Family: "inet6", Scheduler: "sh", Flags: []string{"sh-port"}},
		Dests:   map[string]dataplane.Destination{"[2001:db8::2]:0": {Address: netip.MustParseAddr("2001:db8::2"), Weight: 1, Forward: "nat"}},
	}
	if err := x.base(); err != nil {
		return err
	}
	for _, vs := range []dataplane.VirtualService{persistent, hashed} {
		p, err := planService(vs, map[string]uint32{"192.0.2.2:80": 1})
		if err != nil {
			return err
		}
		if err := x.writeService(p, svcState{}, dataplane.VirtualService{}); err != nil {
			return err
		}
	}
	return nil
}
