package nemesis

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Attempt is one probe: a new TCP connection to the VIP.
type Attempt struct {
	Start, End time.Time
	OK         bool   // connected and the real server's answer read
	Server     string // which real server answered (rs1, rs2)
	Err        string // why not: timeout, ECONNREFUSED, eof, ...
}

// Prober opens a new TCP connection to addr every interval from inside a
// namespace; attempts overlap, each with its own timeout, so the time
// resolution stays at interval while attempts are timing out. An attempt
// succeeds when the real server's answer (its name) arrives. Sockets close
// with RST (no TIME_WAIT pile-up).
//
// All of it runs on one OS thread locked into the namespace, with
// non-blocking sockets and epoll: cheap on a 2-core machine, and every
// socket it creates belongs to the namespace.
type Prober struct {
	addr     netip.AddrPort
	interval time.Duration
	timeout  time.Duration

	mu       sync.Mutex
	attempts []Attempt // in the order they finished

	stop atomic.Bool
	done chan struct{}
	err  error
}

// StartProber starts probing addr (ip:port) from namespace ns.
func StartProber(ns, addr string, interval, timeout time.Duration) (*Prober, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("prober: %q is not an IPv4 address:port", addr)
	}
	p := &Prober{addr: ap, interval: interval, timeout: timeout, done: make(chan struct{})}
	ready := make(chan error, 1)
	go p.run(ns, ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return p, nil
}

// Stop ends probing; attempts in flight are dropped.
func (p *Prober) Stop() {
	if p.stop.CompareAndSwap(false, true) {
		<-p.done
	}
}

// Interval is the time between attempts.
func (p *Prober) Interval() time.Duration { return p.interval }

// Timeout bounds one attempt.
func (p *Prober) Timeout() time.Duration { return p.timeout }

type pending struct {
	start   time.Time
	reading bool
	buf     []byte
}

func (p *Prober) run(ns string, ready chan<- error) {
	defer close(p.done)
	// The thread stays locked (and is discarded when this goroutine
	// ends), so it never returns to the scheduler in the wrong namespace.
	runtime.LockOSThread()
	h, err := netns.GetFromName(ns)
	if err != nil {
		ready <- fmt.Errorf("prober: netns %s: %w", ns, err)
		return
	}
	err = netns.Set(h)
	h.Close()
	if err != nil {
		ready <- fmt.Errorf("prober: enter %s: %w", ns, err)
		return
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		ready <- fmt.Errorf("prober: epoll: %w", err)
		return
	}
	defer unix.Close(ep)
	ready <- nil

	inflight := map[int]*pending{}
	finish := func(fd int, ok bool, server, why string) {
		pd := inflight[fd]
		delete(inflight, fd)
		_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		p.mu.Lock()
		p.attempts = append(p.attempts, Attempt{Start: pd.start, End: time.Now(), OK: ok, Server: server, Err: why})
		p.mu.Unlock()
	}
	defer func() {
		for fd := range inflight {
			unix.Close(fd)
		}
	}()
	sa := &unix.SockaddrInet4{Port: int(p.addr.Port()), Addr: p.addr.Addr().As4()}
	events := make([]unix.EpollEvent, 64)
	next := time.Now()
	for !p.stop.Load() {
		now := time.Now()
		if !now.Before(next) {
			p.open(ep, sa, inflight, finish)
			next = next.Add(p.interval)
			if next.Before(now) { // we stalled: do not burst to catch up
				next = now.Add(p.interval)
			}
		}
		wake := next
		for fd, pd := range inflight {
			dl := pd.start.Add(p.timeout)
			if !now.Before(dl) {
				finish(fd, false, "", "timeout")
			} else if dl.Before(wake) {
				wake = dl
			}
		}
		ms := int((time.Until(wake) + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.EpollWait(ep, events, max(ms, 0))
		if err != nil && !errors.Is(err, unix.EINTR) {
			p.err = err
			return
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			pd, ok := inflight[fd]
			if !ok {
				continue
			}
			if !pd.reading {
				soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
				switch {
				case err != nil:
					finish(fd, false, "", err.Error())
				case soerr != 0:
					finish(fd, false, "", errName(unix.Errno(soerr)))
				default:
					pd.reading = true
					_ = unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
				}
				continue
			}
			var b [256]byte
			k, err := unix.Read(fd, b[:])
			switch {
			case errors.Is(err, unix.EAGAIN):
			case err != nil:
				finish(fd, false, "", errName(err))
			case k == 0:
				if name := bodyName(pd.buf); name != "" {
					finish(fd, true, name, "")
				} else {
					finish(fd, false, "", "eof")
				}
			default:
				pd.buf = append(pd.buf, b[:k]...)
				if name := bodyName(pd.buf); name != "" {
					finish(fd, true, name, "")
				}
			}
		}
	}
}

// open starts one attempt.
func (p *Prober) open(ep int, sa *unix.SockaddrInet4, inflight map[int]*pending, finish func(int, bool, string, string)) {
	start := time.Now()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.mu.Lock()
		p.attempts = append(p.attempts, Attempt{Start: start, End: start, Err: "socket: " + errName(err)})
		p.mu.Unlock()
		return
	}
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	inflight[fd] = &pending{start: start}
	err = unix.Connect(fd, sa)
	switch {
	case err == nil:
		inflight[fd].reading = true
		err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	case errors.Is(err, unix.EINPROGRESS):
		err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)})
	}
	if err != nil {
		finish(fd, false, "", errName(err))
	}
}

// bodyName returns the body of a complete "name\n" HTTP answer.
func bodyName(b []byte) string {
	_, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return ""
	}
	name, _, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return ""
	}
	return string(name)
}

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
	}
	return err.Error()
}

// Attempts returns the finished attempts that started in [from, to),
// in start order.
func (p *Prober) Attempts(from, to time.Time) []Attempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Attempt
	for _, a := range p.attempts {
		if !a.Start.Before(from) && a.Start.Before(to) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Forget drops attempts that started before t (memory, long benchmarks).
func (p *Prober) Forget(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var keep []Attempt
	for _, a := range p.attempts {
		if !a.Start.Before(t) {
			keep = append(keep, a)
		}
	}
	p.attempts = keep
}

// Served reports whether the client was served without a failure over
// the last w: every attempt that started in [now-timeout-w, now-timeout)
// (all of which have finished) succeeded, and there were at least half
// as many as the interval allows.
func (p *Prober) Served(w time.Duration) bool {
	to := time.Now().Add(-p.timeout)
	as := p.Attempts(to.Add(-w), to)
	if len(as) < int(w/p.interval)/2 {
		return false
	}
	for _, a := range as {
		if !a.OK {
			return false
		}
	}
	return true
}

// Err is the error that ended probing early, if any.
func (p *Prober) Err() error { return p.err }

// Gap is the longest time without a successful attempt in [from, to]:
// the spacing of consecutive successes' end times, counting from and to
// as the edges (so no success at all is a gap of to-from).
func Gap(as []Attempt, from, to time.Time) time.Duration {
	var ends []time.Time
	for _, a := range as {
		if a.OK && !a.End.Before(from) && !a.End.After(to) {
			ends = append(ends, a.End)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	last, gap := from, time.Duration(0)
	for _, e := range ends {
		gap = max(gap, e.Sub(last))
		last = e
	}
	return max(gap, to.Sub(last))
}
