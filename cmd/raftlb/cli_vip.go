package main

import (
	"io"
	"net/netip"

	"github.com/raftlb/raftlb/model"
)

// raftlb vip ...

// checkVIPAddr checks the syntax of ADDR[/PREFIX]; the API checks the rest.
func checkVIPAddr(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil
	}
	return usagef("%q is not ADDR[/PREFIX] (e.g. 192.0.2.10/24 or 2001:db8::10/64)", s)
}

func vipCommands() []*command {
	return []*command{
		{
			name: "vip add", params: []string{"ADDR[/PREFIX]"}, synopsis: "-dev IFNAME [-group GROUP]",
			summary: "add a VIP, held on IFNAME by the leader",
			help: "add VIP ADDR[/PREFIX]: the leader adds it to interface IFNAME; VIPs of one group move together. " +
				"Without /PREFIX the address is a host route (/32 or /128)",
			setup: func(f *flagSet) action {
				var dev, grp string
				f.String(&dev, "dev,interface", "", "`IFNAME` of the interface the leader adds the VIP to (required)")
				f.String(&grp, "group", "", "VIP `GROUP` (default "+model.DefaultVIPGroup+")")
				return func(e *env, args []string) error {
					if err := checkVIPAddr(args[0]); err != nil {
						return err
					}
					if !f.isSet("dev") {
						return usagef("vip add: missing -dev IFNAME")
					}
					v := model.NewVIP()
					v.Address, v.Interface = args[0], dev
					if f.isSet("group") {
						v.Group = grp
					}
					resp, err := e.c.CreateVIP(e.ctx, v)
					if err != nil {
						return err
					}
					if resp.VIP != nil {
						v = *resp.VIP
					}
					return e.wrote(resp, "vip %s added on %s", v.Address, v.Interface)
				}
			},
		},
		{
			name: "vip delete", params: []string{"ADDR"}, summary: "remove a VIP",
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					if err := checkVIPAddr(args[0]); err != nil {
						return err
					}
					resp, err := e.c.DeleteVIP(e.ctx, args[0], 0)
					if err != nil {
						return err
					}
					return e.wrote(resp, "vip %s deleted", model.VIPKey(args[0]))
				}
			},
		},
		{
			name: "vip list", summary: "list the VIPs", kind: kindRead,
			setup: func(f *flagSet) action {
				return func(e *env, _ []string) error {
					vips, err := e.c.VIPs(e.ctx, e.read)
					if err != nil {
						return err
					}
					return e.show(vips, func(w io.Writer) {
						rows := [][]string{{"Address", "Interface", "Group"}}
						for _, v := range vips {
							rows = append(rows, []string{v.Address, v.Interface, v.Group})
						}
						writeTable(w, rows)
					})
				}
			},
		},
	}
}
