// Package ipvs is the IPVS (Linux Virtual Server) dataplane backend: it
// programs virtual services and their real servers into the kernel's IPVS
// table over generic netlink, reads them back, sets the connection timeouts
// and runs the kernel's connection-synchronisation daemons.
//
// Services and destinations go through github.com/moby/ipvs; the sync
// daemons, which moby/ipvs does not cover, and the detection of IPVS itself
// go through github.com/mdlayher/genetlink. moby/ipvs does not fail on a
// kernel without IPVS (its writes "succeed" and its reads come back empty),
// so New checks for the kernel's "IPVS" generic netlink family first and
// never hands out a Backend without it.
package ipvs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	moby "github.com/moby/ipvs"

	"github.com/raftlb/raftlb/dataplane"
)

// genlName is the kernel's generic netlink family for IPVS (IPVS_GENL_NAME).
const genlName = "IPVS"

// unsupportedMsg is what New says on a kernel without IPVS.
const unsupportedMsg = `the kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module or run with -dataplane nft`

// unsupportedError is New's error on a kernel without IPVS; it wraps
// dataplane.ErrUnsupported.
type unsupportedError struct{}

func (unsupportedError) Error() string { return unsupportedMsg }
func (unsupportedError) Unwrap() error { return dataplane.ErrUnsupported }

// Backend programs IPVS in one network namespace. Like every
// dataplane.Backend it is used from one goroutine at a time.
type Backend struct {
	h      *moby.Handle
	genl   *genetlink.Conn
	family uint16 // generic netlink family ID of IPVS
}

var (
	_ dataplane.Backend     = (*Backend)(nil)
	_ dataplane.SyncBackend = (*Backend)(nil)
)

// New returns a Backend for the calling process's network namespace. On a
// kernel without IPVS the error wraps dataplane.ErrUnsupported.
func New() (*Backend, error) { return NewInNamespace("") }

// NewInNamespace returns a Backend for the network namespace at path (for
// example /run/netns/dir1); "" is the calling process's namespace.
func NewInNamespace(path string) (*Backend, error) {
	genl, family, err := dialIPVS(path)
	if err != nil {
		return nil, err
	}
	h, err := moby.New(path)
	if err != nil {
		genl.Close()
		return nil, fmt.Errorf("ipvs: opening a netlink socket for IPVS: %w", err)
	}
	return &Backend{h: h, genl: genl, family: family}, nil
}

// Detect reports whether the calling process's kernel has IPVS: nil if it
// has, an error wrapping dataplane.ErrUnsupported if it has not, another
// error if it could not tell.
func Detect() error {
	c, _, err := dialIPVS("")
	if err != nil {
		return err
	}
	return c.Close()
}

// dialIPVS opens a generic netlink socket in the namespace at path ("" =
// the caller's) and looks up the IPVS family on it.
func dialIPVS(path string) (*genetlink.Conn, uint16, error) {
	cfg := &netlink.Config{}
	if path != "" {
		ns, err := os.Open(path)
		if err != nil {
			return nil, 0, fmt.Errorf("ipvs: network namespace: %w", err)
		}
		defer ns.Close()
		cfg.NetNS = int(ns.Fd())
	}
	c, err := genetlink.Dial(cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("ipvs: opening a generic netlink socket: %w", err)
	}
	fam, err := c.GetFamily(genlName)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) {
			return nil, 0, unsupportedError{}
		}
		return nil, 0, fmt.Errorf("ipvs: looking up generic netlink family %q: %w", genlName, err)
	}
	return c, fam.ID, nil
}

// Name is "ipvs".
func (b *Backend) Name() string { return "ipvs" }

// Close closes the netlink sockets; what was programmed stays.
func (b *Backend) Close() error {
	b.h.Close()
	return b.genl.Close()
}

// Dump reads every IPVS service and its destinations: one service dump,
// then one destination dump per service.
func (b *Backend) Dump() (dataplane.Table, error) {
	svcs, err := b.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("ipvs: listing services: %w", err)
	}
	t := make(dataplane.Table, len(svcs))
	for _, ks := range svcs {
		s, err := fromKernelService(ks)
		if err != nil {
			return nil, fmt.Errorf("ipvs: reading a service: %w", err)
		}
		kds, err := b.h.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("ipvs: listing the destinations of %s: %w", s.Key(), err)
		}
		vs := dataplane.VirtualService{Service: s, Dests: make(map[string]dataplane.Destination, len(kds))}
		for _, kd := range kds {
			d, err := fromKernelDest(kd)
			if err != nil {
				return nil, fmt.Errorf("ipvs: reading a destination of %s: %w", s.Key(), err)
			}
			vs.Dests[d.Key()] = d
		}
		t[s.Key()] = vs
	}
	return t, nil
}

// Apply makes the changes one by one, in order, and returns those the
// kernel refused. A failed change does not stop the ones after it.
func (b *Backend) Apply(changes []dataplane.Change) []dataplane.ChangeError {
	var failed []dataplane.ChangeError
	for _, c := range changes {
		if err := b.apply(c); err != nil {
			failed = append(failed, dataplane.ChangeError{Change: c, Err: err})
		}
	}
	return failed
}

// apply makes one change: one netlink request.
func (b *Backend) apply(c dataplane.Change) error {
	var (
		svc *moby.Service
		err error
	)
	switch c.Op {
	case dataplane.AddService, dataplane.UpdateService:
		svc, err = toKernelService(c.Service)
	default:
		svc, err = toKernelServiceKey(c.Service)
	}
	if err != nil {
		return err
	}
	switch c.Op {
	case dataplane.AddService:
		err = b.h.NewService(svc)
	case dataplane.UpdateService:
		err = b.h.UpdateService(svc)
	case dataplane.DeleteService:
		err = b.h.DelService(svc)
	case dataplane.AddDest, dataplane.UpdateDest, dataplane.DeleteDest:
		var d *moby.Destination
		if d, err = toKernelDest(svc.AddressFamily, c.Dest); err != nil {
			return err
		}
		switch c.Op {
		case dataplane.AddDest:
			err = b.h.NewDestination(svc, d)
		case dataplane.UpdateDest:
			err = b.h.UpdateDestination(svc, d)
		default:
			err = b.h.DelDestination(svc, d)
		}
	default:
		return fmt.Errorf("unknown operation %v", c.Op)
	}
	return explain(c, err)
}

// explain adds what an errno from the kernel means for this change. The
// errno stays wrapped (errors.Is works).
func explain(c dataplane.Change, err error) error {
	if err == nil {
		return nil
	}
	var hint string
	switch {
	case errors.Is(err, syscall.ESRCH):
		hint = "the kernel has no such service (changed behind raftlb's back? the next resync repairs it)"
	case errors.Is(err, syscall.EEXIST) && c.Op == dataplane.AddService:
		hint = "the service already exists in the kernel"
	case errors.Is(err, syscall.EEXIST) && c.Op == dataplane.AddDest:
		hint = "the destination already exists in the service"
	case errors.Is(err, syscall.ENOENT) && (c.Op == dataplane.AddService || c.Op == dataplane.UpdateService):
		hint = fmt.Sprintf("the kernel has no scheduler %q: load module ip_vs_%s (twos needs Linux 6.2 or later)",
			c.Service.Scheduler, c.Service.Scheduler)
	case errors.Is(err, syscall.ENOENT):
		hint = "the service has no such destination"
	case errors.Is(err, syscall.EINVAL):
		hint = "the kernel rejected a value"
	default:
		return fmt.Errorf("ipvs: %w", err)
	}
	return fmt.Errorf("ipvs: %w: %s", err, hint)
}

// SetTimeouts sets the IPVS connection timeouts; a zero field keeps the
// kernel's current value (the current values are read first because the
// netlink request carries all three).
func (b *Backend) SetTimeouts(t dataplane.Timeouts) error {
	if t.TCP < 0 || t.TCPFin < 0 || t.UDP < 0 {
		return fmt.Errorf("ipvs: negative timeout in %+v", t)
	}
	if t == (dataplane.Timeouts{}) {
		return nil
	}
	cur, err := b.h.GetConfig()
	if err != nil {
		return fmt.Errorf("ipvs: reading the timeouts: %w", err)
	}
	if err := b.h.SetConfig(mergeTimeouts(cur, t)); err != nil {
		return fmt.Errorf("ipvs: setting the timeouts: %w", err)
	}
	return nil
}

// mergeTimeouts overlays the non-zero fields of t on cur.
func mergeTimeouts(cur *moby.Config, t dataplane.Timeouts) *moby.Config {
	out := *cur
	set := func(dst *time.Duration, sec int) {
		if sec > 0 {
			*dst = time.Duration(sec) * time.Second
		}
	}
	set(&out.TimeoutTCP, t.TCP)
	set(&out.TimeoutTCPFin, t.TCPFin)
	set(&out.TimeoutUDP, t.UDP)
	return &out
}

// Timeouts reads the current connection timeouts.
func (b *Backend) Timeouts() (dataplane.Timeouts, error) {
	c, err := b.h.GetConfig()
	if err != nil {
		return dataplane.Timeouts{}, fmt.Errorf("ipvs: reading the timeouts: %w", err)
	}
	return dataplane.Timeouts{
		TCP:    int(c.TimeoutTCP / time.Second),
		TCPFin: int(c.TimeoutTCPFin / time.Second),
		UDP:    int(c.TimeoutUDP / time.Second),
	}, nil
}

// Schedulers are the IPVS schedulers raftlb knows, in ipvsadm's spelling.
// twos exists from Linux 6.2 on; the others since 2.6/3.x/4.x.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// Capabilities says what the IPVS backend can express: everything.
func Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{
		Schedulers:  append([]string(nil), Schedulers...),
		Flags:       []string{"mh-fallback", "mh-port", "ops", "sh-fallback", "sh-port"},
		Forwards:    []string{"nat", "dr", "tun"},
		Persistence: true,
		Fwmark:      true,
		Thresholds:  true,
	}
}
