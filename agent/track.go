package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/model"
	"github.com/vishvananda/netlink"
)

// Tracked checks (keepalived's track_interface and track_script): while
// one fails this director has a fault. A faulted director holds no VIPs,
// hands leadership away if it leads, and is not chosen as a successor; the
// fault is registered in the replicated state so every director sees it.

// faultState is this director's current fault with a change notifier.
type faultState struct {
	mu      sync.Mutex
	fault   string
	changed chan struct{}
}

func newFaultState() *faultState { return &faultState{changed: make(chan struct{})} }

// Get returns the fault ("" = none).
func (f *faultState) Get() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fault
}

// Changed returns a channel closed at the next change.
func (f *faultState) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Set records the fault and reports whether it changed.
func (f *faultState) Set(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s == f.fault {
		return false
	}
	f.fault = s
	close(f.changed)
	f.changed = make(chan struct{})
	return true
}

func (a *Agent) currentFault() string { return a.faults.Get() }

// Defaults of the tracked checks.
const (
	trackInterfaceEvery = 100 * time.Millisecond
	trackScriptDefault  = time.Second
)

// trackLoop evaluates the tracked interfaces every 100 ms (one netlink
// request each) and the tracked scripts every TrackInterval, each with
// that interval as its timeout.
func (a *Agent) trackLoop(ctx context.Context) {
	every := a.cfg.TrackInterval
	if every <= 0 {
		every = trackScriptDefault
	}
	var scripts []health.Checker
	for _, s := range a.cfg.TrackScripts {
		c, err := trackScriptChecker(s, every)
		if err != nil { // Validate checked it already
			a.log.Error("tracked script", "script", s, "err", err)
			continue
		}
		scripts = append(scripts, c)
	}
	scriptFault := ""
	nextScript := time.Time{}
	tick := time.NewTicker(trackInterfaceEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		if len(scripts) > 0 && !now.Before(nextScript) {
			scriptFault = ""
			for i, c := range scripts {
				cctx, cancel := context.WithTimeout(ctx, every)
				r := c.Check(cctx, health.Target{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
				cancel()
				if !r.Up {
					scriptFault = fmt.Sprintf("script %q failed: %s", a.cfg.TrackScripts[i], r.Err)
					break
				}
			}
			nextScript = now.Add(every)
		}
		fault := interfaceFault(a.cfg.TrackInterfaces)
		if fault == "" {
			fault = scriptFault
		}
		if a.faults.Set(fault) {
			if fault != "" {
				a.log.Warn("tracked check failing: this director will not hold VIPs or lead", "fault", fault)
			} else {
				a.log.Info("tracked checks pass again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// interfaceFault names the first tracked interface that is missing or not
// operationally up.
func interfaceFault(names []string) string {
	for _, n := range names {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return fmt.Sprintf("interface %s: %v", n, err)
		}
		at := l.Attrs()
		if at.Flags&net.FlagUp == 0 {
			return fmt.Sprintf("interface %s is administratively down", n)
		}
		if at.OperState != netlink.OperUp && at.OperState != netlink.OperUnknown {
			return fmt.Sprintf("interface %s is %s", n, at.OperState)
		}
	}
	return ""
}

// trackScriptChecker runs a tracked script ("path arg...") as a health
// script check: exit 0 passes; a script that outlives its timeout is
// killed with its process group.
func trackScriptChecker(cmdline string, timeout time.Duration) (health.Checker, error) {
	f := strings.Fields(cmdline)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	spec, err := model.NormalizeCheck(model.Check{Type: model.CheckScript, Interval: model.Duration(timeout), Timeout: model.Duration(timeout),
		Script: &model.ScriptCheck{Path: f[0], Args: f[1:]}})
	if err != nil {
		return nil, err
	}
	return health.NewChecker(spec)
}
