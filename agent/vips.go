package agent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/dataplane/fence"
	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/model"
)

// startVIPs runs the VIP manager under the lease (lease.go): the leader
// holds every VIP while its quorum-confirmed lease is valid, the others
// none. A director with -dataplane none manages no VIPs either (several of
// them share one namespace in tests). docs/fencing.md has the argument.
func (a *Agent) startVIPs(ctx context.Context) error {
	var links vip.Links
	var ann vip.Announcer
	switch {
	case a.cfg.VIPFence != nil && a.cfg.VIPLinks != nil && a.cfg.VIPAnnouncer != nil:
		a.fence, links, ann = a.cfg.VIPFence, a.cfg.VIPLinks, a.cfg.VIPAnnouncer
	case a.dpKind == DataplaneNone:
		return nil
	default:
		nl, err := vip.NewNetlink(vip.NetlinkConfig{})
		if err != nil {
			return err
		}
		pa, err := vip.NewPacketAnnouncer(vip.PacketConfig{})
		if err != nil {
			_ = nl.Close()
			return err
		}
		// The kernel fence comes first: every VIP of the state is fenced
		// (no ARP/NA, no traffic) on this director unless it holds a live
		// lease.
		f, err := fence.New()
		if err != nil {
			_ = nl.Close()
			_ = pa.Close()
			return fmt.Errorf("VIP fence (needs nftables): %w", err)
		}
		a.fence, a.vipLinks, a.vipAnn = f, nl, pa
		links, ann = nl, pa
	}
	a.vips = vip.New(links, ann, vip.Options{Log: a.log.With("part", "vip"),
		BurstCount: a.cfg.GARPBurst, BurstInterval: a.cfg.GARPInterval, Refresh: a.cfg.GARPRefresh,
		MayAnnounce: a.mayAnnounce})
	// A restarted director holds nothing until it leads: remove VIPs of
	// the (restored) state and every address raftlb marked that are still
	// configured here (a SIGKILLed run leaves them). This comes before the
	// fence is told the VIPs of the state: the fence kept guarding the
	// earlier run's VIPs, but the state may not be replayed yet, and
	// declaring its (maybe empty) VIP list first would unguard an address
	// still configured here (docs/fencing.md, "What holds today").
	if err := a.vips.RemoveUnowned(a.fsm.VIPs()); err != nil {
		// Keep the earlier run's fence declaration: it guards whatever
		// could not be removed until the lease loop declares the state's.
		a.log.Error("cannot remove VIPs left from an earlier run", "err", err)
	} else if err := a.fenceVIPs(a.fsm.VIPs()); err != nil {
		return err
	}
	a.leaseCtl, a.leaseDone = make(chan leaseCmd), make(chan struct{})
	a.goRun(ctx, a.leaseLoop)
	return nil
}

// vipStatus is the "vips" part of /v1/status.
func (a *Agent) vipStatus() *wire.VIPStatus {
	if a.vips == nil {
		return nil
	}
	return &wire.VIPStatus{Held: a.vips.Owned(), Lease: a.leaseStatus(), Stats: wire.VIPStats(a.vips.Stats())}
}

// stopVIPs releases the VIPs (graceful shutdown) or just stops the
// manager (release=false: an abrupt stop, as after SIGKILL nothing runs;
// the fence then drops the VIPs in the kernel when the lease runs out).
func (a *Agent) stopVIPs(release bool) {
	if a.vips != nil {
		if release {
			if err := a.fence.Revoke(); err != nil {
				a.log.Error("cannot revoke the VIP lease in the kernel fence", "err", err)
			}
			if err := a.vips.ReleaseAll(); err != nil {
				a.log.Error("cannot release the VIPs", "err", err)
			}
		}
		_ = a.vips.Close()
		a.vips = nil
	}
	if a.fence != nil {
		_ = a.fence.Close() // leaves the fence in the kernel
	}
	if a.vipAnn != nil {
		_ = a.vipAnn.Close()
	}
	if a.vipLinks != nil {
		_ = a.vipLinks.Close()
	}
	a.fence, a.vipAnn, a.vipLinks = nil, nil, nil
}

// mayAnnounce gates every announcement: only under a live lease, judged
// with a fresh clock, and only while the kernel fence guards the
// interface's egress, so that a frame this daemon sends after freezing
// between this check and the send is dropped if the lease ran out.
//
// The lease is read last, nearest the send.
func (a *Agent) mayAnnounce(ifname string, addr netip.Addr) bool {
	if err := a.fence.Guarded(ifname); err != nil {
		a.log.Warn("VIP not announced: the kernel fence does not guard the interface", "vip", addr, "interface", ifname, "err", err)
		return false
	}
	return time.Now().Before(a.leaseUntil())
}

// fenceVIPs declares the VIPs the kernel fence guards, and their
// interfaces.
func (a *Agent) fenceVIPs(vips []model.VIP) error {
	addrs := make([]netip.Addr, 0, len(vips))
	var ifaces []string
	for _, v := range vips {
		if p, err := netip.ParsePrefix(v.Address); err == nil {
			addrs = append(addrs, p.Addr())
			ifaces = append(ifaces, v.Interface)
		}
	}
	if err := a.fence.SetVIPs(addrs, ifaces); err != nil {
		return fmt.Errorf("VIP fence: %w", err)
	}
	a.fenced = addrs
	return nil
}
