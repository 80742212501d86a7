package guest

import (
	"net/netip"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
)

// Output of ipvsadm 1.31 on Linux 6.1 (Debian 12), captured in the VM.
const (
	listOut = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:0 rr persistent 300
TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0
  -> 10.0.1.1:80                  Masq    3      0          0         
  -> 10.0.1.2:80                  Route   0      0          0         
  -> 10.0.1.3:80                  Tunnel  65535  0          0         
UDP  10.0.0.1:53 mh (mh-port) ops
SCTP 10.0.0.1:5000 rr
TCP  [2001:db8::1]:443 wlc persistent 60 mask 64
  -> [2001:db8::10]:443           Masq    2      0          0         
FWM  7 lc ops
FWM  8 IPv6 rr persistent 10
  -> [2001:db8::11]:0             Route   1      0          0         
`
	thresholdsOut = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.0.0.1:0 rr persistent 300
TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0
  -> 10.0.1.1:80                  100        10         0          0         
  -> 10.0.1.2:80                  0          0          0          0         
  -> 10.0.1.3:80                  0          0          0          0         
UDP  10.0.0.1:53 mh (mh-port) ops
SCTP 10.0.0.1:5000 rr
TCP  [2001:db8::1]:443 wlc persistent 60 mask 64
  -> [2001:db8::10]:443           0          0          0          0         
FWM  7 lc ops
FWM  8 IPv6 rr persistent 10
  -> [2001:db8::11]:0             0          0          0          0         
`
	saveOut = `-A -t 10.0.0.1:0 -s rr -p 300
-A -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3
-a -t 10.0.0.1:80 -r 10.0.1.2:80 -g -w 0
-a -t 10.0.0.1:80 -r 10.0.1.3:80 -i -w 65535 --tun-type ipip
-A -u 10.0.0.1:53 -s mh -o -b mh-port
-A --sctp-service 10.0.0.1:5000 -s rr
-A -t [2001:db8::1]:443 -s wlc -p 60 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 2
-A -f 7 -s lc -o
-A -f 8 -6 -s rr -p 10
-a -f 8 -6 -r [2001:db8::11]:0 -g -w 1
`
)

// fixtureTable is what the commands that produced the outputs above set.
func fixtureTable() dataplane.Table {
	a := netip.MustParseAddr
	t := dataplane.Table{}
	add := func(s dataplane.Service, ds ...dataplane.Destination) {
		vs := dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
		for _, d := range ds {
			vs.Dests[d.Key()] = d
		}
		t[s.Key()] = vs
	}
	add(dataplane.Service{Protocol: "tcp", Address: a("10.0.0.1"), Port: 0, Family: "inet", Scheduler: "rr", Timeout: 300})
	add(dataplane.Service{Protocol: "tcp", Address: a("10.0.0.1"), Port: 80, Family: "inet", Scheduler: "sh",
		Flags: []string{"sh-fallback", "sh-port"}, Timeout: 300, Netmask: 24},
		dataplane.Destination{Address: a("10.0.1.1"), Port: 80, Weight: 3, Forward: "nat", UpperThreshold: 100, LowerThreshold: 10},
		dataplane.Destination{Address: a("10.0.1.2"), Port: 80, Weight: 0, Forward: "dr"},
		dataplane.Destination{Address: a("10.0.1.3"), Port: 80, Weight: 65535, Forward: "tun"})
	add(dataplane.Service{Protocol: "udp", Address: a("10.0.0.1"), Port: 53, Family: "inet", Scheduler: "mh", Flags: []string{"mh-port", "ops"}})
	add(dataplane.Service{Protocol: "sctp", Address: a("10.0.0.1"), Port: 5000, Family: "inet", Scheduler: "rr"})
	add(dataplane.Service{Protocol: "tcp", Address: a("2001:db8::1"), Port: 443, Family: "inet6", Scheduler: "wlc", Timeout: 60, Netmask: 64},
		dataplane.Destination{Address: a("2001:db8::10"), Port: 443, Weight: 2, Forward: "nat"})
	add(dataplane.Service{Fwmark: 7, Family: "inet", Scheduler: "lc", Flags: []string{"ops"}})
	add(dataplane.Service{Fwmark: 8, Family: "inet6", Scheduler: "rr", Timeout: 10},
		dataplane.Destination{Address: a("2001:db8::11"), Port: 0, Weight: 1, Forward: "dr"})
	return t
}

func TestParsers(t *testing.T) {
	th, err := ParseThresholds(thresholdsOut)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"list": listOut, "save": saveOut} {
		parse := ParseList
		if name == "save" {
			parse = ParseSave
		}
		got, err := parse(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := DiffTables(fixtureTable(), WithThresholds(got, th)); d != "" {
			t.Errorf("%s:\n%s", name, d)
		}
	}
}

func TestParseSmall(t *testing.T) {
	conns, err := ParseConns(`IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:57  TIME_WAIT   10.0.0.2:41234     10.0.0.100:80      10.0.1.1:80
`)
	if err != nil || len(conns) != 1 || conns[0].State != "TIME_WAIT" || conns[0].Destination.String() != "10.0.1.1:80" {
		t.Errorf("%+v %v", conns, err)
	}
	to, err := ParseTimeouts("Timeout (tcp tcpfin udp): 900 120 300\n")
	if err != nil || to != (dataplane.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}) {
		t.Errorf("%+v %v", to, err)
	}
	ds := ParseDaemons("master sync daemon (mcast=s0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\nbackup sync daemon (mcast=s0, syncid=7)\n")
	if ds["master"]["port"] != "8848" || ds["backup"]["syncid"] != "7" || ds["master"]["mcast"] != "s0" {
		t.Errorf("%+v", ds)
	}
	if _, err := ParseSave("-A -t 10.0.0.1:80 -s rr -x\n"); err == nil {
		t.Error("unknown option accepted")
	}
}
