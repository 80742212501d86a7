package nft

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/dataplane"
)

// A service's parameters that its names do not carry are written as the
// comment of the first rule of its chain, a destination's weight (and epoch,
// in a persistent service) as the comment of its element in the service's
// dst_ set:
//
//	raftlb v1 family=inet sched=wrr flags=sh-port persist=300 netmask=24
//	weight=3 epoch=2882400018
//
// Both are short (a comment is at most 127 bytes for the nft tool; the
// kernel's limit on user data is 256), readable in `nft list ruleset`, and
// parsed strictly: a comment that formatService would not write exactly is
// drift.
const descPrefix = "raftlb v1 "

func formatService(s dataplane.Service) string {
	flags := strings.Join(s.Flags, ",")
	if flags == "" {
		flags = "-"
	}
	family := s.Family
	if family == "" {
		family = "-"
	}
	return fmt.Sprintf("%sfamily=%s sched=%s flags=%s persist=%d netmask=%d", descPrefix, family, s.Scheduler, flags, s.Timeout, s.Netmask)
}

// parseService fills id (an identity from parseSuffix) with the parameters in
// comment.
func parseService(id dataplane.Service, comment string) (dataplane.Service, error) {
	rest, ok := strings.CutPrefix(comment, descPrefix)
	if !ok {
		return id, fmt.Errorf("comment %q is not a raftlb service description", comment)
	}
	fields := strings.Fields(rest)
	want := []string{"family", "sched", "flags", "persist", "netmask"}
	if len(fields) != len(want) {
		return id, fmt.Errorf("service description %q: want %d fields", comment, len(want))
	}
	vals := make(map[string]string, len(want))
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != want[i] {
			return id, fmt.Errorf("service description %q: field %d is not %s=", comment, i+1, want[i])
		}
		vals[k] = v
	}
	s := id
	if vals["family"] != "-" {
		s.Family = vals["family"]
	} else {
		s.Family = ""
	}
	s.Scheduler = vals["sched"]
	if vals["flags"] != "-" {
		s.Flags = strings.Split(vals["flags"], ",")
	}
	t, err1 := strconv.ParseUint(vals["persist"], 10, 32)
	m, err2 := strconv.Atoi(vals["netmask"])
	if err1 != nil || err2 != nil {
		return id, fmt.Errorf("service description %q: bad number", comment)
	}
	s.Timeout, s.Netmask = uint32(t), m
	if formatService(s) != comment {
		return id, fmt.Errorf("service description %q is not canonical", comment)
	}
	return s, nil
}

// formatDest is a destination's dst_ element comment: its weight and, in
// a persistent service, its epoch (see pinKeyExprs).
func formatDest(w int, epoch uint32) string {
	if epoch == 0 {
		return "weight=" + strconv.Itoa(w)
	}
	return "weight=" + strconv.Itoa(w) + " epoch=" + strconv.FormatUint(uint64(epoch), 10)
}

func parseDest(comment string) (w int, epoch uint32, err error) {
	ws, es, hasEpoch := strings.Cut(comment, " epoch=")
	v, ok := strings.CutPrefix(ws, "weight=")
	w, err1 := strconv.Atoi(v)
	var e uint64
	var err2 error
	if hasEpoch {
		e, err2 = strconv.ParseUint(es, 10, 32)
	}
	if !ok || err1 != nil || err2 != nil || (hasEpoch && e == 0) || formatDest(w, uint32(e)) != comment {
		return 0, 0, fmt.Errorf("destination comment %q is not weight=N [epoch=N]", comment)
	}
	return w, uint32(e), nil
}
