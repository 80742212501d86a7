package vip

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// nsRef is a network namespace held open by a file descriptor, or the
// namespace of the caller (the zero value).
type nsRef struct {
	h    netns.NsHandle
	open bool
}

// openNetns opens the namespace at path ("" = the current one: nothing is
// opened and nothing switched).
func openNetns(path string) (nsRef, error) {
	if path == "" {
		return nsRef{h: netns.None()}, nil
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nsRef{}, fmt.Errorf("vip: open network namespace %s: %w", path, err)
	}
	return nsRef{h: h, open: true}, nil
}

func (n nsRef) close() {
	if n.open {
		_ = n.h.Close()
	}
}

// do runs fn on an OS thread switched into the namespace; sockets fn
// creates stay in it for their whole life. If the thread cannot be switched
// back it stays locked, so the runtime discards it rather than reusing it
// in the wrong namespace.
func (n nsRef) do(fn func() error) error {
	if !n.open {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("vip: current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("vip: enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("vip: leave network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
