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
		return b, nil, nil // IPVS expresses everything the model has: no limits
	}
}
