// Package nft is the nftables dataplane backend, for kernels without IPVS:
// a director that DNATs new connections to the real servers (LVS-NAT), with
// conntrack doing the rest of each connection.
//
// # One table
//
// Everything raftlb writes is in one table, "table inet raftlb"; nothing
// else in the ruleset is read for services or ever written. The inet family
// serves IPv4 and IPv6 from the same chains and maps (NAT in inet tables
// needs Linux 5.2), so a service is one set of objects whatever its family,
// and "nft list table inet raftlb" shows everything.
//
// # Layout
//
//	chain prerouting  { type nat hook prerouting priority dstnat; … }  connections arriving at the director
//	chain output      { type nat hook output priority -100; … }        connections the director opens itself
//
// Both base chains hold the same six dispatch rules, in IPVS's order of
// precedence (fwmark, then protocol+address+port, then the port-zero
// service of the address):
//
//	meta nfproto ipv4 meta mark vmap @fwmark4
//	meta nfproto ipv6 meta mark vmap @fwmark6
//	meta l4proto . ip daddr . th dport vmap @services4
//	meta l4proto . ip6 daddr . th dport vmap @services6
//	meta l4proto . ip daddr vmap @allports4
//	meta l4proto . ip6 daddr vmap @allports6
//
// Each map entry is "key : goto svc_<service>", so finding a service is one
// hash lookup however many there are. Only a connection's first packet
// traverses NAT chains; the rest follow conntrack, which is why a
// destination's weight can drop to 0 (drain) or the destination disappear
// without breaking its open connections.
//
// A service (names from its key: tcp/192.0.2.1:80 → tcp_192.0.2.1_80,
// udp/[2001:db8::1]:53 → udp_2001-db8--1_53, fwmark/inet/7 → fwm_inet_7)
// owns:
//
//   - chain svc_<s>: its rules (below). The first rule's comment is the
//     service's description, "raftlb v1 family=inet sched=wrr flags=-
//     persist=0 netmask=0".
//   - set dst_<s>, type addr . inet_service: every destination, weight 0
//     too, each element's comment "weight=3" (plus " epoch=N" in a
//     persistent service).
//   - its entry in one dispatch map.
//   - if persistent: set per_<s> of remembered clients, and one chain
//     per_<s>_<addr>_<port> per destination.
//
// A service chain schedules with an anonymous interval map bound to the
// rule, slot → destination, the slots proportional to the weights (divided
// by their gcd; weight 0 has none):
//
//	rr, wrr:  dnat ip to numgen inc mod 4 map { 0-2 : 10.1.0.1 . 80, 3 : 10.1.0.2 . 80 }
//	sh:       dnat ip to jhash ip saddr [. th sport] mod 4 seed 0x72616674 map { … }
//	dh:       dnat ip to jhash ip daddr mod 2 seed 0x72616674 map { … }
//	none:     drop   (no destination with weight > 0)
//
// numgen inc makes rr and wrr exact (3:1 is 3 of every 4 connections). The
// hash seed is fixed, so every director of the cluster sends a client to
// the same real server. A port-zero or fwmark service whose destinations
// have port 0 DNATs the address only, keeping the client's port.
//
// A persistent service (Timeout > 0) remembers each client (its source
// address masked to Netmask) with the destination it was given, in per_<s>
// (key client . address . port . epoch, entries timing out after Timeout
// unless refreshed):
//
//	chain svc_<s> {
//	    ip saddr . 10.1.0.1 . 80 . E1 @per_<s> update @per_<s> { … timeout 5m } dnat ip to 10.1.0.1:80   (one per destination)
//	    numgen inc mod 2 vmap { 0 : goto per_<s>_10.1.0.1_80, 1 : goto per_<s>_10.1.0.2_80 }
//	}
//	chain per_<s>_10.1.0.1_80 {
//	    add @per_<s> { ip saddr . 10.1.0.1 . 80 . E1 timeout 5m } dnat ip to 10.1.0.1:80
//	    dnat ip to 10.1.0.1:80   (the set is full: serve without remembering)
//	}
//
// A remembered client keeps its destination across weight changes, and
// with weight 0 (as IPVS does by default). The epoch Ex is drawn when a
// destination is added: when it is deleted its sticky rule goes, so its
// clients are scheduled afresh, and their old entries, which match no rule
// even if the destination comes back, expire. (nft 1.0.6 prints the left
// side of the sticky lookup with "[invalid type]"; the kernel's rule is
// as above.)
//
// # Applying changes
//
// Apply folds a batch into the state each touched service ends in,
// starting from the reconciler's cache of the service (the only copy of
// the desired state: the backend keeps none, only kernel data such as the
// epochs of remembered clients, see svcState), and writes all of them in
// one nftables transaction (one netlink batch, which the kernel commits or
// aborts as a whole). Every change is idempotent: adding what exists
// replaces it, updating what is absent creates it, deleting what is
// absent succeeds. A touched service is rewritten
// whole — its chain flushed and refilled, its dst_ set refilled, its
// dispatch entry set — and nothing of any other service is sent, so the
// cost is proportional to the touched services, not to the table. Pin
// chains of destinations that stay are kept when nothing they depend on
// changed, so remembered clients survive. Every write is idempotent
// against what may already exist (objects are added, a no-op if present,
// before being flushed or deleted), so the same code repairs drift, and a
// service deleted behind raftlb's back is written back whole by the next
// change to it. If the kernel refuses the batch, each touched service is
// retried in its own transaction, trusting nothing it knew of the
// service's objects (pin chains it believed present are written again),
// and only the changes of the services that still fail are returned,
// with the kernel's message.
//
// # Dump
//
// Dump reads the table and, for each service, decodes the description
// (the rule comment and the dst_ elements), generates the objects Apply
// would write for it, and compares them with the kernel's: every rule
// expression by expression (parsed on our own socket, so that an
// expression the library does not know is drift, not ignored), the
// anonymous maps' elements, the sets' definitions and elements, the pin
// chains, the dispatch entry and the base chains. A service that matches is
// returned as written; one that differs (a rule deleted or edited, a set
// flushed, its entry pointing elsewhere, the base chains changed) is
// returned with its identity only (Scheduler "" and no destinations), so
// that the reconciler updates it and Apply rewrites it whole; one with
// nothing left is absent. The remembered clients are not read.
//
// # What nftables cannot express
//
// See Capabilities: the schedulers needing connection counts (lc, wlc, sed,
// nq, lblc, lblcr, fo, ovf, twos) and mh; direct routing and tunnelling
// (NAT only); connection thresholds; one-packet scheduling ("ops").
// Connection timeouts are conntrack's (SetTimeouts does nothing).
package nft
