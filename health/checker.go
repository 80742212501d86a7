package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/model"
	"golang.org/x/sys/unix"
)

// Target is one thing to check: a real server's address and port and the
// normalised spec of its check.
type Target struct {
	Addr netip.AddrPort
	Spec model.Check
}

// Key identifies a probe: the address and port actually checked and the
// spec. Services sharing a real server with the same check share a Key and
// so one probe (keepalived #2358).
type Key struct {
	Addr netip.AddrPort // the checked address: Spec.Port replaces the target's port
	Spec string         // Spec.Hash()
}

func (k Key) String() string { return k.Addr.String() + "/" + k.Spec }

// Key returns t's probe key. t.Spec must be normalised.
func (t Target) Key() Key {
	s := t.Spec
	s.Port = 0 // in Addr already
	return Key{Addr: t.CheckAddr(), Spec: s.Hash()}
}

// CheckAddr is the address and port the check connects to.
func (t Target) CheckAddr() netip.AddrPort {
	if t.Spec.Port != 0 {
		return netip.AddrPortFrom(t.Addr.Addr(), uint16(t.Spec.Port))
	}
	return t.Addr
}

// Result is the outcome of one check attempt.
type Result struct {
	Up      bool
	Latency time.Duration
	Err     string // why it failed; empty when Up
	// Weight is a dynamic weight (a script check with dynamic that exited
	// 2-255: exit-2) of a result that is up; nil: the configured weight
	// (every other check, and a script's exit 0, as keepalived's
	// misc_dynamic).
	Weight *int
}

// Checker performs one attempt of a check. Check must return by ctx's
// deadline (the spec's timeout) and is called concurrently for different
// targets.
type Checker interface {
	Check(ctx context.Context, t Target) Result
}

// NewChecker returns the checker for a normalised spec. Checkers hold only
// spec-derived state (a parsed regex, an HTTP transport) and may be shared by
// every target with that spec.
func NewChecker(s model.Check) (Checker, error) {
	switch s.Type {
	case model.CheckTCP:
		return tcpChecker{}, nil
	case model.CheckHTTP, model.CheckHTTPS:
		return newHTTPChecker(s)
	case model.CheckUDP:
		return newUDPChecker(s), nil
	case model.CheckDNS:
		return newDNSChecker(s)
	case model.CheckICMP:
		return icmpChecker{}, nil
	case model.CheckScript:
		return scriptChecker{spec: *s.Script}, nil
	case model.CheckNone:
		return noneChecker{}, nil
	}
	return nil, fmt.Errorf("health: no checker for type %q", s.Type)
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context, t Target) Result

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, t Target) Result { return f(ctx, t) }

type noneChecker struct{}

func (noneChecker) Check(context.Context, Target) Result { return Result{Up: true} }

func fail(start time.Time, format string, args ...any) Result {
	return Result{Latency: time.Since(start), Err: fmt.Sprintf(format, args...)}
}

func ok(start time.Time) Result { return Result{Up: true, Latency: time.Since(start)} }

// errText shortens common network errors.
func errText(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// tcpChecker connects and closes with a reset (SO_LINGER 0), so thousands of
// checks per second leave no TIME_WAIT sockets behind, as HAProxy does.
//
// It uses the socket calls directly and waits for the connection with
// poll(2) on the worker's own thread instead of Go's netpoller: a check is
// one socket, connect, poll, close and nothing else (no epoll registration,
// no goroutine park and wake-up), which halves its CPU cost. The thread is
// held for at most the check's timeout, in slices of pollSlice so that
// cancellation is seen; the worker pool bounds the threads.
type tcpChecker struct{}

const pollSlice = 100 * time.Millisecond

func (tcpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	if err := tcpConnect(ctx, t.CheckAddr()); err != nil {
		return fail(start, "connect: %s", errText(ctx, err))
	}
	return ok(start)
}

func tcpConnect(ctx context.Context, ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return err
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	err = unix.Connect(fd, sa)
	if err == nil {
		return nil
	}
	if err != unix.EINPROGRESS {
		return err
	}
	for {
		wait := pollSlice
		if dl, has := ctx.Deadline(); has {
			wait = min(wait, time.Until(dl))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if wait <= 0 {
			return context.DeadlineExceeded
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return os.NewSyscallError("poll", err)
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return os.NewSyscallError("getsockopt", err)
		}
		if soerr != 0 {
			return syscall.Errno(soerr)
		}
		return nil
	}
}
