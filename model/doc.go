// Package model is the objects of raftlb's replicated state and their one
// validation: virtual services, real servers, VIPs, cluster settings,
// directors, health-check specs (Check), the field-naming Error every
// validation returns, and the derived values every reader needs alike
// (EffectiveWeight, HealthyWeight). It is a leaf: no raft, no I/O, so the
// FSM, the dataplane, health checking, the API and the CLI share it
// without depending on each other.
//
// Normalize* validate and canonicalise an object (lower-case names,
// canonical addresses, sorted flags, defaults) and name the offending
// field in JSON spelling ("reals[2].weight", "check.http.status").
package model
