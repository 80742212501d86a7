package agent

import (
	"context"

	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/fsm"
)

// startVIPs runs the VIP manager under the lease (lease.go): the leader
// holds every VIP while its quorum-confirmed lease is valid, the others
// none. A director with -dataplane none manages no VIPs either (several of
// them share one namespace in tests). docs/fencing.md has the argument.
func (a *Agent) startVIPs(ctx context.Context) error {
	if a.dpKind == DataplaneNone {
		return nil
	}
	links, err := vip.NewNetlink(vip.NetlinkConfig{})
	if err != nil {
		return err
	}
	ann, err := vip.NewPacketAnnouncer(vip.PacketConfig{})
	if err != nil {
		_ = links.Close()
		return err
	}
	a.vipLinks, a.vipAnn = links, ann
	a.vips = vip.New(links, ann, vip.Options{Log: a.log.With("part", "vip"),
		BurstCount: a.cfg.GARPBurst, BurstInterval: a.cfg.GARPInterval, Refresh: a.cfg.GARPRefresh})
	// A restarted director holds nothing until it leads: remove VIPs of
	// the (restored) state that are still configured here.
	if err := a.vips.RemoveUnowned(a.fsm.VIPs()); err != nil {
		a.log.Error("cannot remove VIPs left from an earlier run", "err", err)
	}
	a.goRun(ctx, a.leaseLoop)
	return nil
}

// vipStatus is the "vips" part of /v1/status.
func (a *Agent) vipStatus() any {
	if a.vips == nil {
		return nil
	}
	return struct {
		Held  []fsm.VIP `json:"held"`
		Lease leaseView `json:"lease"`
		Stats vip.Stats `json:"stats"`
	}{a.vips.Owned(), a.leaseStatus(), a.vips.Stats()}
}

// stopVIPs releases the VIPs (graceful shutdown) or just stops the
// manager (release=false: an abrupt stop, as after SIGKILL nothing runs).
func (a *Agent) stopVIPs(release bool) {
	if a.vips == nil {
		return
	}
	if release {
		if err := a.vips.ReleaseAll(); err != nil {
			a.log.Error("cannot release the VIPs", "err", err)
		}
	}
	_ = a.vips.Close()
	_ = a.vipAnn.Close()
	_ = a.vipLinks.Close()
	a.vips = nil
}
