package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/model"
)

// Dataplane kinds (-dataplane).
const (
	DataplaneAuto = "auto" // ipvs when the kernel has it, else nft
	DataplaneIPVS = "ipvs"
	DataplaneNFT  = "nft"
	DataplaneNone = "none" // program nothing (API-only director, tests)
)

// opener opens one backend kind. Registered by backends.go.
type opener func() (dataplane.Backend, *model.DataplaneCaps, error)

var openers = map[string]opener{}

// openDataplane opens the configured backend. auto tries ipvs, then nft.
func openDataplane(kind string) (dataplane.Backend, *model.DataplaneCaps, string, error) {
	if kind == DataplaneAuto {
		var errs []error
		for _, k := range []string{DataplaneIPVS, DataplaneNFT} {
			if open := openers[k]; open != nil {
				b, caps, err := open()
				if err == nil {
					return b, caps, k, nil
				}
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
		}
		return nil, nil, "", fmt.Errorf("-dataplane auto: no usable dataplane: %v", errs)
	}
	open := openers[kind]
	if open == nil {
		return nil, nil, "", fmt.Errorf("-dataplane: %q is not available in this build (auto, ipvs, nft or none)", kind)
	}
	b, caps, err := open()
	if err != nil {
		return nil, nil, "", fmt.Errorf("-dataplane %s: %w", kind, err)
	}
	return b, caps, kind, nil
}

// startDataplane opens the backend and runs its reconciler until ctx ends.
func (a *Agent) startDataplane(ctx context.Context) error {
	kind := a.cfg.Dataplane
	if a.cfg.Backend != nil {
		a.backend, a.caps, a.dpKind = a.cfg.Backend, a.cfg.BackendCaps, a.cfg.Backend.Name()
	} else if kind != DataplaneNone {
		b, caps, k, err := openDataplane(kind)
		if err != nil {
			return err
		}
		a.backend, a.caps, a.dpKind = b, caps, k
	}
	if a.backend == nil {
		a.dpKind = DataplaneNone
		return nil
	}
	a.reconciler = dataplane.NewReconciler(a.backend, dataplane.Options{
		Log: a.log.With("part", "dataplane"), Resync: a.cfg.Resync,
		OwnedFile: filepath.Join(a.cfg.DataDir, "dataplane-owned.json"), PruneUnmanaged: a.cfg.DataplanePrune,
	})
	src := dataplane.NewFSMSource(a.fsm, a.node.IsLeader)
	a.goRun(ctx, func(ctx context.Context) { src.Watch(ctx, a.node.LeaderChanges()) })
	a.goRun(ctx, func(ctx context.Context) { a.reconciler.Run(ctx, src) })
	a.log.Info("dataplane running", "backend", a.dpKind)
	return nil
}

// dataplaneStatus is the "dataplane" part of /v1/status.
func (a *Agent) dataplaneStatus() *wire.DataplaneStatus {
	if a.reconciler == nil {
		return &wire.DataplaneStatus{Backend: a.dpKind}
	}
	st := a.reconciler.Status()
	out := &wire.DataplaneStatus{Backend: st.Backend, Services: st.Services, Destinations: st.Destinations,
		LastSync: st.LastSync, LastResync: st.LastResync, KernelOps: st.KernelOps, DriftRepairs: st.DriftRepairs,
		Unmanaged: st.Unmanaged, LastError: st.LastError, ResyncInterval: st.ResyncInterval}
	for _, e := range st.Errors {
		out.Errors = append(out.Errors, wire.ObjectError(e))
	}
	for _, d := range st.SyncDaemons {
		w := wire.SyncDaemon{Role: d.Role, SyncID: d.SyncID, Interface: d.Interface, McastPort: d.McastPort, McastTTL: d.McastTTL, MaxLen: d.MaxLen}
		if d.McastGroup.IsValid() {
			w.McastGroup = d.McastGroup.String()
		}
		out.SyncDaemons = append(out.SyncDaemons, w)
	}
	return out
}

// resyncDefault is the drift-repair period when -resync is not given.
const resyncDefault = 30 * time.Second
