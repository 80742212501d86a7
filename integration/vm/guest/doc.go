// Package guest holds the tests that run inside the IPVS test VM
// (integration/vm/run.sh): the ipvs Backend against a real kernel, checked
// with ipvsadm as an independent reader, real NAT traffic through network
// namespaces, the connection-sync daemon, drift repair and a benchmark.
//
// The tests are built with the vmguest tag (`go test -c -tags vmguest`) and
// run only when RAFTLB_VM_GUEST=1, which the VM's /init sets: they flush
// IPVS and create network namespaces, which a developer's machine must not
// see.
package guest
