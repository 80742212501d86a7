// Package health runs the health checks of one director: checkers for each
// check type (model.Check), and a Prober that schedules thousands of
// targets from one timer-driven goroutine onto a bounded worker pool and
// keeps a rise/fall state per target. Results are reported to the caller
// (for gossip); the leader decides (Decide).
package health
