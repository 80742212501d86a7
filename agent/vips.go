package agent

import (
	"context"
	"reflect"

	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/fsm"
)

// startVIPs runs the VIP manager: the leader holds every VIP, the others
// none. A director with -dataplane none manages no VIPs either (several of
// them share one namespace in tests).
//
// This is leadership-following only; the fenced lease that guarantees no
// two directors ever hold a VIP at once is the next step (docs/architecture.md).
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
	a.goRun(ctx, a.vipLoop)
	return nil
}

// vipLoop hands the VIPs to the manager when leadership or the VIP list
// changes; other FSM changes cost one comparison.
func (a *Agent) vipLoop(ctx context.Context) {
	leaderCh := a.node.LeaderChanges()
	var last []fsm.VIP
	held := false
	first := true
	for {
		changed := a.fsm.Changed()
		leader := a.node.IsLeader()
		var want []fsm.VIP
		if leader {
			want = a.fsm.VIPs()
		}
		if first || leader != held || !reflect.DeepEqual(want, last) {
			if err := a.vips.Set(want); err != nil {
				a.log.Error("VIP change incomplete; the refresh pass retries", "leader", leader, "err", err)
			} else if leader != held {
				a.log.Info("VIPs follow leadership", "leader", leader, "vips", len(want))
			}
			last, held, first = want, leader, false
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-leaderCh:
		}
	}
}

// vipStatus is the "vips" part of /v1/status.
func (a *Agent) vipStatus() any {
	if a.vips == nil {
		return nil
	}
	return struct {
		Held  []fsm.VIP `json:"held"`
		Stats vip.Stats `json:"stats"`
	}{a.vips.Owned(), a.vips.Stats()}
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
