package main

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/raftlb/raftlb/api/wire"
)

// raftlb status and raftlb cluster ...

func statusCommand() *command {
	return &command{
		name: "status", summary: "show this director's raft status and the peers", kind: kindClient,
		setup: func(f *flagSet) action {
			return func(e *env, _ []string) error {
				st, err := e.c.Status(e.ctx)
				if err != nil {
					return err
				}
				// The VIP holder is the leader: ask it about its lease.
				leaderSt := &st
				if st.Role != "leader" {
					leaderSt = nil
					for _, p := range st.Peers {
						if p.Leader && p.APIAddr != "" {
							if lc, err := e.c.WithAddr(e.c.Scheme() + "://" + p.APIAddr); err == nil {
								if ls, err := lc.Status(e.ctx); err == nil {
									leaderSt = &ls
								}
							}
						}
					}
				}
				return e.show(st, func(w io.Writer) { writeStatus(w, st, leaderSt) })
			}
		},
	}
}

func writeStatus(w io.Writer, st wire.Status, leaderSt *wire.Status) {
	leader := "(none)"
	if st.LeaderID != "" || st.LeaderAddr != "" {
		leader = st.LeaderID + " (" + st.LeaderAddr + ")"
	}
	var fields [][2]string
	if s := st.Stopped; s != nil {
		fields = append(fields, [2]string{"STOPPED", s.Reason + "; this director left raft. " + s.Recovery})
	}
	fields = append(fields, [][2]string{
		{"Node", st.NodeID + " (" + st.RaftAddr + ")"},
		{"Role", st.Role},
		{"Leader", leader},
		{"Term", strconv.FormatUint(st.Term, 10)},
		{"Commit index", strconv.FormatUint(st.CommitIndex, 10)},
		{"Applied index", strconv.FormatUint(st.AppliedIndex, 10)},
	}...)
	if st.LastContact != nil {
		fields = append(fields, [2]string{"Last contact", st.LastContact.Format(time.RFC3339)})
	}
	fields = append(fields,
		[2]string{"Timing profile", orNone(st.TimingProfile)},
		[2]string{"Version", orNone(st.Version)})
	if sec := st.Security; sec != nil {
		v := "raft " + sec.Raft + ", API " + sec.API
		if sec.Insecure {
			v = "INSECURE (-insecure): " + v
		}
		fields = append(fields, [2]string{"Security", v})
	}
	fields = append(fields, leadershipFields(st)...)
	fields = append(fields, vipHolderFields(leaderSt)...)
	writeFields(w, fields)
	fmt.Fprintln(w)
	writePeers(w, st.Peers)
}

func writePeers(w io.Writer, peers []wire.Peer) {
	rows := [][]string{{"ID", "RaftAddress", "APIAddress", "Suffrage", "Leader"}}
	for _, p := range peers {
		leader := ""
		if p.Leader {
			leader = "*"
		}
		rows = append(rows, []string{p.ID, p.Address, orNone(p.APIAddr), p.Suffrage, leader})
	}
	writeTable(w, rows)
}

func clusterCommands() []*command {
	return []*command{
		{
			name: "cluster peers", summary: "list the raft voters", kind: kindClient,
			setup: func(f *flagSet) action {
				return func(e *env, _ []string) error {
					peers, err := e.c.Peers(e.ctx)
					if err != nil {
						return err
					}
					return e.show(peers, func(w io.Writer) { writePeers(w, peers) })
				}
			},
		},
		{
			name: "cluster join", params: []string{"ID", "RAFTADDR"}, summary: "add a director to the cluster as a voter",
			help: "add director ID, reachable for raft at RAFTADDR (host:port), to the cluster as a voter. " +
				"Usually `raftlb agent -join` does this; use it to add a director by hand",
			setup: func(f *flagSet) action {
				var apiAddr, scheme string
				f.String(&apiAddr, "api-addr", "", "the new director's API address `HOST:PORT`, registered so that writes can be forwarded to it")
				f.Var(&enumValue{p: &scheme, choices: []string{"http", "https"}}, "api-scheme", "`SCHEME` of its API: http or https (default http)")
				return func(e *env, args []string) error {
					if err := checkHostPort("RAFTADDR", args[1]); err != nil {
						return err
					}
					if apiAddr != "" {
						if err := checkHostPort("-api-addr", apiAddr); err != nil {
							return err
						}
					} else if scheme != "" {
						return usagef("-api-scheme needs -api-addr")
					}
					resp, err := e.c.Join(e.ctx, wire.JoinRequest{ID: args[0], Address: args[1], APIAddr: apiAddr, APIScheme: scheme})
					if err != nil {
						return err
					}
					return e.wrote(resp, "node %s joined at %s", args[0], args[1])
				}
			},
		},
		{
			name: "cluster remove", params: []string{"ID"}, summary: "remove a director from the cluster",
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					resp, err := e.c.Remove(e.ctx, args[0])
					if err != nil {
						return err
					}
					return e.wrote(resp, "node %s removed", args[0])
				}
			},
		},
		{
			name: "cluster transfer-leadership", params: []string{"[ID]"}, summary: "hand leadership (and the VIPs) to another director",
			help: "hand leadership, and with it the VIPs, to director ID, or to the most up-to-date follower when no ID is given",
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					id := ""
					if len(args) > 0 {
						id = args[0]
					}
					resp, err := e.c.TransferLeadership(e.ctx, id)
					if err != nil {
						return err
					}
					if id == "" {
						return e.wrote(resp, "leadership transferred")
					}
					return e.wrote(resp, "leadership transferred to %s", id)
				}
			},
		},
	}
}

// checkHostPort checks that s is host:port with a numeric port.
func checkHostPort(what, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err == nil && host != "" {
		if p, perr := strconv.Atoi(port); perr == nil && p >= 1 && p <= 65535 {
			return nil
		}
	}
	return usagef("%s %q: want HOST:PORT (IPv6 as [addr]:port)", what, s)
}

// leadershipFields shows this director's priority, role and fault.
func leadershipFields(st wire.Status) [][2]string {
	l := st.Leadership
	if l == nil {
		return nil
	}
	pri := strconv.Itoa(l.Priority)
	if l.PreemptDelay != "" {
		pri += ", preempt delay " + l.PreemptDelay
	}
	if l.NoPreempt {
		pri += ", nopreempt"
	}
	if l.Witness {
		pri += ", witness (never holds VIPs)"
	}
	out := [][2]string{{"Priority", pri}}
	if l.Fault != "" {
		out = append(out, [2]string{"Fault", l.Fault})
	}
	if l.Decision != "" {
		out = append(out, [2]string{"Leadership", l.Decision})
	}
	return out
}

// vipHolderFields shows who holds the VIPs, until when, and how long the
// last failover took, from the leader's status.
func vipHolderFields(ls *wire.Status) [][2]string {
	if ls == nil {
		return [][2]string{{"VIP holder", "unknown (no leader answering)"}}
	}
	if ls.VIPs == nil {
		return nil // the leader manages no VIPs (-dataplane none)
	}
	lease := ls.VIPs.Lease
	holder := "none (" + ls.NodeID + " leads: " + lease.Reason + ")"
	if lease.Holding {
		holder = fmt.Sprintf("%s (lease until %s; %v leases renewed 4× per lease)", ls.NodeID, lease.Until.Format("15:04:05.000"), lease.Duration)
	}
	out := [][2]string{{"VIP holder", holder}}
	if lease.LastFailover != "" {
		how := "waited the claim delay " + lease.ClaimDelay
		if lease.ClaimedOnRelease {
			how = "planned handover: previous holder's release committed"
		}
		out = append(out, [2]string{"Last failover", lease.LastFailover + " from leadership to VIPs held (" + how + ")"})
	}
	return out
}
