package nemesis

import (
	"slices"
	"time"
)

// Summary aggregates the rounds of one system and nemesis.
type Summary struct {
	System  string
	Nemesis Nemesis
	Rounds  int // rounds that completed
	Errors  int // rounds that did not (no recovery, a step failed)
	// Gap statistics over the completed rounds.
	GapMin, GapMedian, GapP99, GapMax time.Duration
	TakeoverMedian                    time.Duration // -1: no takeover in any round
	RestoreGapMax                     time.Duration
	DualAddr, DualARP                 int // dual-holder samples, all rounds
	RoundsWithDual                    int
	NewHolders                        map[string]int // who took over, per round
}

// Summarize groups results by system and nemesis, in first-seen order.
func Summarize(results []Result) []Summary {
	var out []Summary
	idx := map[[2]string]int{}
	var gaps, takeovers [][]time.Duration
	for _, r := range results {
		key := [2]string{r.System, string(r.Nemesis)}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, Summary{System: r.System, Nemesis: r.Nemesis, RestoreGapMax: -1, NewHolders: map[string]int{}})
			gaps, takeovers = append(gaps, nil), append(takeovers, nil)
		}
		s := &out[i]
		s.DualAddr += len(r.DualAddr)
		s.DualARP += len(r.DualARP)
		if len(r.DualAddr)+len(r.DualARP) > 0 {
			s.RoundsWithDual++
		}
		if r.Err != nil {
			s.Errors++
			continue
		}
		s.Rounds++
		gaps[i] = append(gaps[i], r.Gap)
		if r.Takeover >= 0 {
			takeovers[i] = append(takeovers[i], r.Takeover)
		}
		s.RestoreGapMax = max(s.RestoreGapMax, r.RestoreGap)
		if r.New != "" {
			s.NewHolders[r.New]++
		}
	}
	for i := range out {
		g := gaps[i]
		slices.Sort(g)
		if len(g) > 0 {
			out[i].GapMin, out[i].GapMedian, out[i].GapP99, out[i].GapMax = g[0], Quantile(g, 0.5), Quantile(g, 0.99), g[len(g)-1]
		}
		out[i].TakeoverMedian = -1
		if t := takeovers[i]; len(t) > 0 {
			slices.Sort(t)
			out[i].TakeoverMedian = Quantile(t, 0.5)
		}
	}
	return out
}

// Quantile of sorted durations, nearest rank (the p99 of 20 rounds is
// the largest).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if q == 0.5 && len(sorted)%2 == 0 {
		return (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	rank := int(q*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
