package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// machine describes where the figures were measured.
type machine struct {
	NumCPU       int    `json:"nproc"`
	CPUModel     string `json:"cpu_model"`
	GoVersion    string `json:"go_version"`
	RedisVersion string `json:"redis_version"`
	OS           string `json:"os"`
	Date         string `json:"date"`
	// GoTestDate is when the lifecycle rows were measured; Date is when
	// the HTTP and peer ones were. They differ when a run reused one or
	// the other (-skip-gotest, or -skip-http with -skip-peer).
	GoTestDate      string `json:"gotest_date,omitempty"`
	GoTestCommand   string `json:"go_test_command"`
	HTTP            string `json:"http"`
	Load            string `json:"load_before"`
	LoadAfterGoTest string `json:"load_after_gotest"`
	LoadAfterHTTP   string `json:"load_after_http"`
	// GoTestMinutes and HTTPMinutes are how long each part of the run took.
	GoTestMinutes float64 `json:"gotest_minutes,omitempty"`
	HTTPMinutes   float64 `json:"http_minutes,omitempty"`
	// PeerCommand is the go test command of the peer benchmarks;
	// PeerMinutes how long it took.
	PeerCommand string  `json:"peer_command,omitempty"`
	PeerMinutes float64 `json:"peer_minutes,omitempty"`
}

func describeMachine() machine {
	m := machine{
		NumCPU:    runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		m.NumCPU = atoiOr(strings.TrimSpace(string(out)), m.NumCPU)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("date", "-u", "+%Y-%m-%d %H:%M UTC").Output(); err == nil {
		m.Date = strings.TrimSpace(string(out))
	}
	return m
}

func redisServerVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func atoiOr(s string, def int) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return def
		}
		n = n*10 + int(c-'0')
	}
	if s == "" {
		return def
	}
	return n
}

// twoRuns reports whether the lifecycle rows come from another run than
// the HTTP and peer ones.
func (m machine) twoRuns() bool {
	return m.GoTestDate != "" && m.GoTestDate != m.Date
}
