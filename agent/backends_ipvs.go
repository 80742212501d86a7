package agent

import (
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/ipvs"
	"github.com/raftlb/raftlb/model"
)

func init() {
	openers[DataplaneIPVS] = func() (dataplane.Backend, *model.DataplaneCaps, error) {
		b, err := ipvs.New() // fails with a plain message on a kernel without IPVS
		if err != nil {
			return nil, nil, err
		}
		// Everything the model has, with the schedulers this kernel has
		// and tun's rule on address families (model.DataplaneCaps).
		return b, capsOf(b.Capabilities()), nil
	}
}
