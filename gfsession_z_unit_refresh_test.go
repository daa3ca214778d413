package gfsession

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRefreshMemo_Due(t *testing.T) {
	const ttl = 64 * time.Second // period 1s
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name string
		at   time.Time
		ttl  time.Duration
		want bool
	}{
		{"just restarted", t0, ttl, false},
		{"within the period", t0.Add(time.Second - time.Nanosecond), ttl, false},
		{"at the end of the period", t0.Add(time.Second), ttl, true},
		{"a shorter TTL than restarted with: what is left is enough", t0.Add(20 * time.Millisecond), 1280 * time.Millisecond, false},
		{"a longer TTL, the same cap", t0.Add(time.Second), time.Hour, true},
		{"the clock went back", t0.Add(-time.Millisecond), ttl, false},
		{"restarted with a shorter TTL", t0, 2 * ttl, true},
		{"a TTL under 64ns has no period", t0, 63, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m refreshMemo
			m.restarted("a", ttl, t0)
			assert.Equal(t, tt.want, m.due("a", tt.ttl, tt.at))
			assert.True(t, m.due("b", tt.ttl, tt.at), "a session never restarted is due")
		})
	}
}

// TestRefreshMemo_Bounded checks that the memo keeps the sessions of the
// last two generations only, however many sessions came before.
func TestRefreshMemo_Bounded(t *testing.T) {
	var m refreshMemo
	t0 := time.Unix(1_700_000_000, 0)
	for i := 0; i < 100_000; i++ {
		m.restarted(fmt.Sprint("s", i), time.Hour, t0)
	}
	assert.Equal(t, 100_000, m.size())
	// Each shard turns a generation over on its first use a second later,
	// and drops the first one on its first use a second after that.
	for step := 1; step <= 2; step++ {
		at := t0.Add(time.Duration(step) * refreshGeneration)
		for i := 0; i < 10*refreshMemoShards; i++ {
			m.restarted(fmt.Sprint("late", step, "-", i), time.Hour, at)
		}
	}
	assert.LessOrEqual(t, m.size(), 20*refreshMemoShards, "the first generation is gone")
	assert.True(t, m.due("s1", time.Hour, t0.Add(2*refreshGeneration)), "a session dropped from the memo is due")
	assert.False(t, m.due("late2-0", time.Hour, t0.Add(2*refreshGeneration)))
}
