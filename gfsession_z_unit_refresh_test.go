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
			m.restarted("a", ttl, t0, t0)
			assert.Equal(t, tt.want, m.due("a", tt.ttl, tt.at))
			assert.True(t, m.due("b", tt.ttl, tt.at), "a session never restarted is due")
		})
	}
}

// TestRefreshMemo_Overlaps checks which of two TTL restarts of a session
// the memo keeps: the later one, unless the two overlapped in time (the
// server may have applied either last), when it keeps the earlier expiry.
func TestRefreshMemo_Overlaps(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type restart struct {
		ttl         time.Duration
		start, done time.Time
	}
	tests := []struct {
		name     string
		restarts []restart
		want     bool // a 64s read at 20ms is due
	}{
		{"a long restart after a short one", []restart{{2 * time.Second, ms(0), ms(1)}, {64 * time.Second, ms(5), ms(6)}}, false},
		{"a short write after a long restart", []restart{{64 * time.Second, ms(0), ms(1)}, {2 * time.Second, ms(5), ms(6)}}, true},
		{"overlapping, the short one recorded first", []restart{{2 * time.Second, ms(0), ms(10)}, {64 * time.Second, ms(1), ms(11)}}, true},
		{"overlapping, the long one recorded first", []restart{{64 * time.Second, ms(0), ms(10)}, {2 * time.Second, ms(1), ms(11)}}, true},
		{"overlapping, the same TTL", []restart{{64 * time.Second, ms(0), ms(10)}, {64 * time.Second, ms(1), ms(11)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m refreshMemo
			for _, r := range tt.restarts {
				m.restarted("a", r.ttl, r.start, r.done)
			}
			assert.Equal(t, tt.want, m.due("a", 64*time.Second, ms(20)))
		})
	}
}

// TestRefreshMemo_Bounded checks that the memo keeps the sessions of the
// last two generations only, however many sessions came before.
func TestRefreshMemo_Bounded(t *testing.T) {
	var m refreshMemo
	t0 := time.Unix(1_700_000_000, 0)
	for i := 0; i < 100_000; i++ {
		m.restarted(fmt.Sprint("s", i), time.Hour, t0, t0)
	}
	assert.Equal(t, 100_000, m.size())
	// Each shard turns a generation over on its first use a second later,
	// and drops the first one on its first use a second after that.
	for step := 1; step <= 2; step++ {
		at := t0.Add(time.Duration(step) * refreshGeneration)
		for i := 0; i < 10*refreshMemoShards; i++ {
			m.restarted(fmt.Sprint("late", step, "-", i), time.Hour, at, at)
		}
	}
	assert.LessOrEqual(t, m.size(), 20*refreshMemoShards, "the first generation is gone")
	assert.True(t, m.due("s1", time.Hour, t0.Add(2*refreshGeneration)), "a session dropped from the memo is due")
	assert.False(t, m.due("late2-0", time.Hour, t0.Add(2*refreshGeneration)))
}
