package gossip

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// badInput are the memberlist (v0.5.4) log messages about one packet or
// stream it could not decrypt or decode: garbage, a port scan, a node with
// another key. Anyone who can reach the gossip port can cause them, one
// line (or two) per packet, so they are counted and rate-limited.
var badInput = []string{
	"Decrypt packet failed",
	"failed to receive", // a stream: not encrypted, not decryptable, bad framing
	"unacceptable label",
	"double packet label header",
	"double stream label header",
	"cannot decode label",
	"label header cannot be empty",
	"invalid checksum",
	"missing message type byte",
	"UDP packet too short",
	"not supported", // an unknown message type
	"Failed to decode",
	"truncated messages",
	"Failed to decompress payload",
	"Received invalid msgType",
	"Failed to receive user message",
	"Failed to read remote state",
}

// badEcho are lines memberlist writes after a bad-input line about the same
// stream (its error reply failing): rate-limited with it, not counted again.
var badEcho = []string{"Failed to send error", "Failed to encode error response"}

// badInputLog is memberlist's log output. It passes every line to out
// except those about bad input: it counts those (in count) and writes the
// first of each interval, then, once the interval has passed, one line with
// how many it held back.
type badInputLog struct {
	out   io.Writer // hclog's standard writer (levels inferred from [ERR] etc.)
	log   hclog.Logger
	every time.Duration
	count *atomic.Uint64
	now   func() time.Time

	mu       sync.Mutex
	lastLine time.Time // when the last bad-input line was written
	held     uint64    // bad inputs since then, not written
	lastHeld string
}

func newBadInputLog(l hclog.Logger, every time.Duration, count *atomic.Uint64) *badInputLog {
	return &badInputLog{out: l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}), log: l, every: every, count: count, now: time.Now}
}

func (l *badInputLog) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) > 0 {
			l.line(line)
		}
	}
	return len(p), nil
}

func (l *badInputLog) line(line []byte) {
	s := string(line)
	if containsAny(s, badEcho) {
		return
	}
	if !containsAny(s, badInput) {
		l.out.Write(line)
		return
	}
	l.count.Add(1)
	msg := strings.TrimSpace(s)
	if _, rest, ok := strings.Cut(msg, "memberlist: "); ok {
		msg = rest
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held++
	l.lastHeld = msg
	if l.lastLine.IsZero() || now.Sub(l.lastLine) >= l.every {
		l.writeLocked(now)
	}
}

// tick writes the held-back count once the interval has passed.
func (l *badInputLog) tick(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held > 0 && now.Sub(l.lastLine) >= l.every {
		l.writeLocked(now)
	}
}

// writeLocked writes one line for the bad inputs held back; l.mu must be
// held.
func (l *badInputLog) writeLocked(now time.Time) {
	if l.held == 1 && (l.lastLine.IsZero() || now.Sub(l.lastLine) >= 2*l.every) {
		l.log.Error("dropped a gossip packet or stream that cannot be decrypted or decoded (more are counted in the gossip stats, BadPackets, and logged at most once per interval)",
			"error", l.lastHeld, "interval", l.every)
	} else {
		l.log.Error("dropped gossip packets or streams that cannot be decrypted or decoded", "count", l.held,
			"since", now.Sub(l.lastLine).Round(time.Second), "last", l.lastHeld)
	}
	l.held, l.lastHeld, l.lastLine = 0, "", now
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
