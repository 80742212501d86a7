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
//
// Each change is idempotent (see dataplane.Backend): an add of what exists
// becomes an update, an update of what is absent an add, a deletion of
// what is absent a success. Beyond that, IPVS's answers say when the
// reconciler's cache is wrong about a service, and the service is then
// made what the cache and the batch say: ESRCH (no such service) for a
// service the cache has recreates it with the cached destinations the
// batch does not touch, and EEXIST for a service the cache lacks takes it
// over, deleting the destinations the batch does not give it. Each costs
// reading or writing that one service, never the table.
func (b *Backend) Apply(programmed dataplane.Table, changes []dataplane.Change) []dataplane.ChangeError {
	batch := dataplane.NewBatch(programmed, changes)
	var failed []dataplane.ChangeError
	for _, c := range changes {
		if err := b.apply(batch, c); err != nil {
			failed = append(failed, dataplane.ChangeError{Change: c, Err: err})
		}
	}
	return failed
}

// apply makes one change: one netlink request, a second when the kernel
// contradicts the cache, and the repair of the service described at Apply.
func (b *Backend) apply(batch dataplane.Batch, c dataplane.Change) error {
	key := c.Service.Key()
	switch c.Op {
	case dataplane.AddService, dataplane.UpdateService:
		svc, err := toKernelService(c.Service)
		if err != nil {
			return err
		}
		if c.Op == dataplane.AddService {
			err = b.h.NewService(svc)
			if errors.Is(err, syscall.EEXIST) { // there though the cache has it not
				if err = b.h.UpdateService(svc); err == nil {
					err = b.prune(svc, batch.Given(key))
				}
			}
		} else {
			err = b.h.UpdateService(svc)
			if errors.Is(err, syscall.ESRCH) { // deleted behind raftlb's back
				err = b.recreate(batch, c.Service, svc)
			}
		}
		return explain(c, err)
	case dataplane.DeleteService:
		svc, err := toKernelServiceKey(c.Service)
		if err != nil {
			return err
		}
		if err = b.h.DelService(svc); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return explain(c, err)
	case dataplane.AddDest, dataplane.UpdateDest, dataplane.DeleteDest:
	default:
		return fmt.Errorf("unknown operation %v", c.Op)
	}
	svc, err := toKernelServiceKey(c.Service)
	if err != nil {
		return err
	}
	d, err := toKernelDest(svc.AddressFamily, c.Dest)
	if err != nil {
		return err
	}
	err = b.upsertDest(c.Op, svc, d)
	if errors.Is(err, syscall.ESRCH) && !batch.Cached(key) && c.Op == dataplane.DeleteDest {
		return nil // no service, so no destination either
	}
	if errors.Is(err, syscall.ESRCH) && batch.Cached(key) {
		// The service was deleted behind raftlb's back: recreate it, then
		// make the change (a deletion has nothing left to do).
		full, cerr := toKernelService(c.Service)
		if cerr != nil {
			return fmt.Errorf("the kernel has no service %s, and it cannot be recreated: %w", key, cerr)
		}
		if err = b.recreate(batch, c.Service, full); err == nil && c.Op != dataplane.DeleteDest {
			err = b.upsertDest(c.Op, svc, d)
		}
	}
	return explain(c, err)
}

// upsertDest makes one destination change idempotent: an add of an
// existing destination updates it, an update of a missing one adds it, a
// deletion of a missing one succeeds (ENOENT: the service has no such
// destination; a missing service is ESRCH, left to the caller).
func (b *Backend) upsertDest(op dataplane.Op, svc *moby.Service, d *moby.Destination) error {
	switch op {
	case dataplane.AddDest:
		err := b.destCmd(cmdNewDest, svc, d)
		if errors.Is(err, syscall.EEXIST) {
			err = b.destCmd(cmdSetDest, svc, d)
		}
		return err
	case dataplane.UpdateDest:
		err := b.destCmd(cmdSetDest, svc, d)
		if errors.Is(err, syscall.ENOENT) {
			err = b.destCmd(cmdNewDest, svc, d)
		}
		return err
	}
	if err := b.destCmd(cmdDelDest, svc, d); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}

// recreate adds service s (svc, its kernel form) back with the cached
// destinations the batch does not touch; the batch's own changes make the
// rest.
func (b *Backend) recreate(batch dataplane.Batch, s dataplane.Service, svc *moby.Service) error {
	err := b.h.NewService(svc)
	if errors.Is(err, syscall.EEXIST) {
		err = b.h.UpdateService(svc)
	}
	if err != nil {
		return err
	}
	for _, cd := range batch.Kept(s.Key()) {
		d, err := toKernelDest(svc.AddressFamily, cd)
		if err == nil {
			err = b.upsertDest(dataplane.AddDest, svc, d)
		}
		if err != nil {
			return fmt.Errorf("recreating %s with destination %s: %w", s.Key(), cd.Key(), err)
		}
	}
	return nil
}

// prune deletes the kernel's destinations of svc that keep does not name:
// a service the cache did not have holds only what the batch gives it.
func (b *Backend) prune(svc *moby.Service, keep map[string]bool) error {
	kds, err := b.h.GetDestinations(svc)
	if err != nil {
		return fmt.Errorf("listing the destinations of a service raftlb did not know: %w", err)
	}
	for _, kd := range kds {
		d, err := fromKernelDest(kd)
		if err != nil || keep[d.Key()] {
			continue // one raftlb cannot read is one it never wrote
		}
		if err := b.destCmd(cmdDelDest, svc, kd); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("deleting destination %s of a service raftlb did not know: %w", d.Key(), err)
		}
	}
	return nil
}

// explain adds what an errno from the kernel means for this change. The
// errno stays wrapped (errors.Is works). EEXIST, and ENOENT and ESRCH for
// what is absent, no longer come here: Apply makes them successes.
func explain(c dataplane.Change, err error) error {
	if err == nil {
		return nil
	}
	var hint string
	switch {
	case errors.Is(err, syscall.ESRCH):
		hint = "the kernel has no such service, and the batch did not create it"
	case errors.Is(err, syscall.ENOENT) && (c.Op == dataplane.AddService || c.Op == dataplane.UpdateService):
		hint = fmt.Sprintf("the kernel has no scheduler %q: load module ip_vs_%s (twos needs Linux 6.2 or later)",
			c.Service.Scheduler, c.Service.Scheduler)
	case errors.Is(err, syscall.EINVAL) && crossesFamilies(c):
		hint = "the kernel refuses a destination of the other address family while a connection-sync daemon runs"
	case errors.Is(err, syscall.EINVAL):
		hint = "the kernel rejected a value"
	case errors.Is(err, syscall.ERANGE):
		hint = "the kernel refuses a lower threshold above the upper one (0 = none)"
	default:
		return fmt.Errorf("ipvs: %w", err)
	}
	return fmt.Errorf("ipvs: %w: %s", err, hint)
}

// crossesFamilies reports whether c is a destination change whose
// destination is not of its service's address family.
func crossesFamilies(c dataplane.Change) bool {
	if !c.Dest.Address.IsValid() {
		return false
	}
	fam := c.Service.Family
	if fam == "" && c.Service.Address.IsValid() {
		fam = addrFamily(c.Service.Address)
	}
	return addrFamily(c.Dest.Address) != fam
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
