package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const (
	ours = "gfsession"
	gf   = "gf"
)

// lifecycle indexes the go test rows by row and implementation.
type lifecycle struct {
	order []rowKey
	rows  map[rowKey]map[string]benchRow
}

func indexRows(rows []benchRow) lifecycle {
	l := lifecycle{rows: map[rowKey]map[string]benchRow{}}
	for _, r := range rows {
		k := r.key()
		if l.rows[k] == nil {
			l.rows[k] = map[string]benchRow{}
			l.order = append(l.order, k)
		}
		l.rows[k][r.Impl] = r
	}
	return l
}

// backends returns the backends in run order.
func (l lifecycle) backends() []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range l.order {
		if k.Backend == "manager" {
			continue
		}
		if !seen[k.Backend] {
			seen[k.Backend] = true
			out = append(out, k.Backend)
		}
	}
	return out
}

// pair returns our row and gf's for k.
func (l lifecycle) pair(k rowKey) (o, g benchRow, ok bool) {
	m := l.rows[k]
	o, ok1 := m[ours]
	g, ok2 := m[gf]
	return o, g, ok1 && ok2
}

// speedup is ours ÷ gf's operations per second.
func (l lifecycle) speedup(k rowKey) float64 {
	o, g, ok := l.pair(k)
	if !ok || o.Metrics["ns/op"] == 0 {
		return math.NaN()
	}
	return g.Metrics["ns/op"] / o.Metrics["ns/op"]
}

func fx(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// vs formats "ours vs gf" for a metric, or "—".
func vs(o, g benchRow, unit string) string {
	ov, ok1 := o.Metrics[unit]
	gv, ok2 := g.Metrics[unit]
	if !ok1 || !ok2 {
		return "—"
	}
	return num(ov) + " / " + num(gv)
}

func ns(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f µs", v/1e3)
	}
	return fmt.Sprintf("%.0f ns", v)
}

// httpIndex indexes the HTTP results.
type httpIndex map[httpCase]httpResult

func indexHTTP(rs []httpResult) httpIndex {
	h := httpIndex{}
	for _, r := range rs {
		h[r.httpCase] = r
	}
	return h
}

func (h httpIndex) get(backend, impl, size, ep string) (httpResult, bool) {
	r, ok := h[httpCase{backend, impl, size, ep}]
	return r, ok && r.RPS > 0
}

func (h httpIndex) ratio(backend, size, ep string) float64 {
	o, ok1 := h.get(backend, ours, size, ep)
	g, ok2 := h.get(backend, gf, size, ep)
	if !ok1 || !ok2 {
		return math.NaN()
	}
	return pairedRatio(o, g)
}

// pairedRatio returns the requests per second of `a` ÷ those of `b`: the
// median of the ratios of their runs in the same round when both have
// them (a slow spell of the machine hits both sides of a round alike),
// else the ratio of their median runs.
func pairedRatio(a, b httpResult) float64 {
	if len(a.RoundsRPS) == 0 || len(a.RoundsRPS) != len(b.RoundsRPS) {
		return a.RPS / b.RPS
	}
	ratios := make([]float64, len(a.RoundsRPS))
	for i := range ratios {
		ratios[i] = a.RoundsRPS[i] / b.RoundsRPS[i]
	}
	sort.Float64s(ratios)
	if n := len(ratios); n%2 == 0 {
		return (ratios[n/2-1] + ratios[n/2]) / 2
	}
	return ratios[len(ratios)/2]
}

func (h httpIndex) vsLimit(size string, backend string) float64 {
	o, ok1 := h.get(backend, ours, size, "GET")
	l, ok2 := h.get("redis", "limit", size, "GET")
	if !ok1 || !ok2 {
		return math.NaN()
	}
	return pairedRatio(o, l)
}

var (
	sizes       = []string{"1key", "100keys"}
	httpBackend = []string{"memory", "file", "redis", "redis-hash"}
)

// summaryTables is the part shared by docs/benchmarks.md and README.md.
func summaryTables(l lifecycle, h httpIndex) string {
	var b strings.Builder
	b.WriteString("Session lifecycle through `gsession.Manager` (`go test -bench`; rw = load, 3 gets, 1 set, close; ro = load, 3 gets, close). Ratios are gfsession's operations per second ÷ gf's built-in storage of the same kind, same backend, same run: above 1 gfsession is faster.\n\n")
	b.WriteString("| backend | session | rw, 1 core | ro, 1 core | rw, 2 cores parallel | ro, 2 cores parallel | allocs/op rw (ours / gf) | Redis round trips ro (ours / gf) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, be := range l.backends() {
		for _, size := range sizes {
			k := func(mode, variant string, cpu int) rowKey { return rowKey{be, size, mode, variant, cpu} }
			o, g, ok := l.pair(k("rw", "serial", 1))
			if !ok {
				continue
			}
			oro, gro, _ := l.pair(k("ro", "serial", 1))
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", be, size,
				fx(l.speedup(k("rw", "serial", 1))), fx(l.speedup(k("ro", "serial", 1))),
				fx(l.speedup(k("rw", "parallel", 2))), fx(l.speedup(k("ro", "parallel", 2))),
				vs(o, g, "allocs/op"), vs(oro, gro, "rt/op"))
		}
	}
	b.WriteString("\nHTTP through a real `ghttp` server on 127.0.0.1 (GET reads 3 session keys, POST sets 1; requests per second, gfsession ÷ gf; the limit is a handler doing one raw Redis GET of a value as large as the session through the same client).\n\n")
	b.WriteString("| backend | session | GET ours/gf | POST ours/gf | GET ours/limit | GET req/s (ours / gf) | POST req/s (ours / gf) | Redis cmds/req GET (ours / gf) | Redis cmds/req POST (ours / gf) |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, be := range httpBackend {
		for _, size := range sizes {
			og, ok1 := h.get(be, ours, size, "GET")
			gg, ok2 := h.get(be, gf, size, "GET")
			op, _ := h.get(be, ours, size, "POST")
			gp, _ := h.get(be, gf, size, "POST")
			if !ok1 && !ok2 {
				continue
			}
			limit := "—"
			cmdsGet, cmdsPost := "—", "—"
			if be == "redis" || be == "redis-hash" {
				limit = fx(h.vsLimit(size, be))
				cmdsGet = num(og.CmdsPerReq) + " / " + num(gg.CmdsPerReq)
				cmdsPost = num(op.CmdsPerReq) + " / " + num(gp.CmdsPerReq)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", be, size,
				fx(h.ratio(be, size, "GET")), fx(h.ratio(be, size, "POST")), limit,
				num(og.RPS), num(gg.RPS), num(op.RPS), num(gp.RPS), cmdsGet, cmdsPost)
		}
	}
	return b.String()
}

// floorCeiling returns, for the memory-1k lifecycle row of `k`'s size and
// mode (serial, 1 core), gf's ns/op divided by BenchmarkManagerFloor's: the
// speed-up over gf of a storage that does nothing at all, which no storage
// that hands gf's Session the session's map (so that Gets call no storage
// method) can exceed. ok is false without both rows.
func floorCeiling(l lifecycle, size, mode string) (ceiling float64, ok bool) {
	f, has := l.rows[rowKey{"manager", size, mode, "serial", 1}]["floor"]
	if !has || f.Metrics["ns/op"] <= 0 {
		return 0, false
	}
	_, g, has := l.pair(rowKey{"memory-1k", size, mode, "serial", 1})
	if !has {
		return 0, false
	}
	return g.Metrics["ns/op"] / f.Metrics["ns/op"], true
}

// ceilingDetail says, for the memory target's verdict, how far above gf a
// storage that does nothing gets in each canonical row.
func ceilingDetail(l lifecycle) string {
	var parts []string
	for _, size := range []string{"1key", "100keys"} {
		for _, mode := range []string{"rw", "ro"} {
			if c, ok := floorCeiling(l, size, mode); ok {
				parts = append(parts, fmt.Sprintf("%s %s %s", size, mode, fx(c)))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; the most a storage that loads the session's map can reach (gf ÷ a storage that does nothing, BenchmarkManagerFloor, serial, 1 core): " + strings.Join(parts, ", ")
}

// target is one checked performance target, met or not.
type target struct {
	name   string
	ok     bool
	detail string
}

func checkTargets(l lifecycle, h httpIndex) []target {
	var ts []target
	minOver := func(keys []rowKey, f func(rowKey) float64) (float64, string) {
		min, at := math.Inf(1), ""
		for _, k := range keys {
			v := f(k)
			if math.IsNaN(v) {
				continue
			}
			if v < min {
				min, at = v, fmt.Sprintf("%s/%s/%s/%s cpu=%d", k.Backend, k.Size, k.Mode, k.Variant, k.CPU)
			}
		}
		return min, at
	}
	sel := func(pred func(rowKey) bool) []rowKey {
		var out []rowKey
		for _, k := range l.order {
			if pred(k) {
				out = append(out, k)
			}
		}
		return out
	}
	isMem := func(k rowKey) bool { return strings.HasPrefix(k.Backend, "memory") }
	// Ratio targets are judged on the canonical rows (serial, 1 core) and
	// the HTTP runs; the lowest ratio over every variant is shown too.
	canon := func(k rowKey) bool { return k.Variant == "serial" && k.CPU == 1 }
	judge := func(keys []rowKey, limit float64) (ok bool, detail string) {
		var c []rowKey
		for _, k := range keys {
			if canon(k) {
				c = append(c, k)
			}
		}
		cv, cat := minOver(c, l.speedup)
		av, aat := minOver(keys, l.speedup)
		return cv >= limit, fmt.Sprintf("lifecycle (serial, 1 core) lowest %s (%s); over all variants lowest %s (%s)", fx(cv), cat, fx(av), aat)
	}

	// memory: >= 2x ops/s on the lifecycle.
	memRW := sel(func(k rowKey) bool { return isMem(k) && k.Mode == "rw" })
	if len(memRW) > 0 {
		ok, d := judge(memRW, 2)
		_, dro := judge(sel(func(k rowKey) bool { return isMem(k) && k.Mode == "ro" }), 2)
		ts = append(ts, target{"memory: ≥ 2× gf's ops/s on the lifecycle", ok,
			"rw: " + d + "; ro: " + dro + fmt.Sprintf("; HTTP GET %s / %s, POST %s / %s (1 key / 100 keys)",
				fx(h.ratio("memory", "1key", "GET")), fx(h.ratio("memory", "100keys", "GET")),
				fx(h.ratio("memory", "1key", "POST")), fx(h.ratio("memory", "100keys", "POST"))) +
				ceilingDetail(l)})
		worse := 0
		detail := ""
		for _, k := range sel(isMem) {
			o, g, ok := l.pair(k)
			if ok && o.Metrics["allocs/op"] >= g.Metrics["allocs/op"] {
				worse++
				if detail == "" {
					detail = fmt.Sprintf("e.g. %s/%s/%s: %s allocs/op vs gf's %s", k.Backend, k.Size, k.Mode,
						num(o.Metrics["allocs/op"]), num(g.Metrics["allocs/op"]))
				}
			}
		}
		ts = append(ts, target{"memory: fewer allocs/op than gf", worse == 0,
			fmt.Sprintf("%d of %d memory rows do not have fewer; %s", worse, len(sel(isMem)), detail)})
	}
	for _, k := range l.order {
		if k.Backend != "memory-1M" {
			continue
		}
		o, g, ok := l.pair(k)
		if !ok {
			continue
		}
		if ov, has := o.Metrics["overhead-B/session"]; has {
			ts = append(ts, target{"memory: ≤ 400 bytes overhead per live session at 1M", ov <= 400,
				fmt.Sprintf("gfsession %s B/session (%s over a bare map[id]map[key]value of the same sessions); gf %s B/session (%s over)",
					num(o.Metrics["B/session"]), num(ov), num(g.Metrics["B/session"]), num(g.Metrics["overhead-B/session"]))})
		}
		break
	}
	// file: >= 1x read-only, >= 0.8x writes.
	fileRO := sel(func(k rowKey) bool { return strings.HasPrefix(k.Backend, "file") && k.Mode == "ro" })
	fileRW := sel(func(k rowKey) bool { return strings.HasPrefix(k.Backend, "file") && k.Mode == "rw" })
	if len(fileRO) > 0 {
		ok, d := judge(fileRO, 1)
		hv := math.Min(h.ratio("file", "1key", "GET"), h.ratio("file", "100keys", "GET"))
		ts = append(ts, target{"file: ≥ 1× gf for read-only", ok && !(hv < 1),
			fmt.Sprintf("%s; HTTP GET lowest %s", d, fx(hv))})
		okw, dw := judge(fileRW, 0.8)
		hw := math.Min(h.ratio("file", "1key", "POST"), h.ratio("file", "100keys", "POST"))
		ts = append(ts, target{"file: ≥ 0.8× gf for writes (no fsync)", okw && !(hw < 0.8),
			fmt.Sprintf("%s; HTTP POST lowest %s", dw, fx(hw))})
	}
	for _, be := range []string{"redis", "redis-hash"} {
		lo, detail := math.Inf(1), ""
		for _, size := range sizes {
			for _, ep := range []string{"GET", "POST"} {
				r := h.ratio(be, size, ep)
				if math.IsNaN(r) {
					continue
				}
				detail += fmt.Sprintf("%s %s %s; ", size, ep, fx(r))
				lo = math.Min(lo, r)
			}
		}
		if !math.IsInf(lo, 1) {
			ts = append(ts, target{be + ": ≥ 1× gf's requests/s over HTTP on both endpoints", lo >= 1, strings.TrimSuffix(detail, "; ")})
		}
		ll, ld := math.Inf(1), ""
		for _, size := range sizes {
			r := h.vsLimit(size, be)
			if math.IsNaN(r) {
				continue
			}
			ld += fmt.Sprintf("%s %s; ", size, fx(r))
			ll = math.Min(ll, r)
		}
		if !math.IsInf(ll, 1) {
			ts = append(ts, target{be + ": read-only within 10% of the one-round-trip limit", ll >= 0.9, strings.TrimSuffix(ld, "; ")})
		}
	}
	for _, cpu := range []int{1} {
		o, g, ok := l.pair(rowKey{"redis-hash", "100keys", "ro", "serial", cpu})
		if ok {
			ts = append(ts, target{"redis-hash: 100 keys and 3 gets do not pay 3 round trips", o.Metrics["rt/op"] < 3,
				fmt.Sprintf("round trips per read-only request %s (gf: %s); Redis commands %s (gf: %s)",
					num(o.Metrics["rt/op"]), num(g.Metrics["rt/op"]), num(o.Metrics["cmds/op"]), num(g.Metrics["cmds/op"]))})
		}
	}
	return ts
}

func writeReport(root string, m machine, rows []benchRow, hr []httpResult) error {
	l := indexRows(rows)
	h := indexHTTP(hr)
	targets := checkTargets(l, h)
	summary := summaryTables(l, h)

	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("<!-- Generated by `cd hack/bench && go run .` from hack/bench/results/; edit hack/bench/report.go or hack/bench/analysis.md, not this file. -->\n\n")
	b.WriteString("gfsession's storages against gf's built-in storages of the same kind (`gsession.NewStorageMemory`, `NewStorageFile`, `NewStorageRedis`, `NewStorageRedisHashTable`), on the same backend, measured side by side in one run on one machine. Absolute figures depend on the machine; the ratios are what to read.\n\n")
	b.WriteString("![gfsession ÷ gf, per backend and endpoint](benchmarks.png)\n\n")

	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, `nproc` = %d (%s)\n", m.CPUModel, m.NumCPU, m.OS)
	fmt.Fprintf(&b, "- Go: `%s`\n", m.GoVersion)
	fmt.Fprintf(&b, "- Redis: %s (a private `redis-server` on 127.0.0.1, no persistence)\n", m.RedisVersion)
	fmt.Fprintf(&b, "- Date: %s; load average before / after go test / after the HTTP run: %s / %s / %s\n", m.Date, m.Load, m.LoadAfterGoTest, m.LoadAfterHTTP)
	b.WriteString("- The HTTP load generator runs in the same process as the server and shares its cores.\n\n")

	b.WriteString("## How to run\n\n")
	b.WriteString("Everything (go test benchmarks, HTTP load run, this report, the chart and the README block):\n\n```sh\ncd hack/bench && go run .\n```\n\n")
	fmt.Fprintf(&b, "The lifecycle benchmarks alone, from the module root:\n\n```sh\n%s\n```\n\n", m.GoTestCommand)
	fmt.Fprintf(&b, "HTTP load: %s. `go run . -skip-gotest` redoes only the HTTP run; `-skip-gotest -skip-http` only the report. Raw results: `hack/bench/results/`.\n\n", m.HTTP)

	b.WriteString("## Summary\n\n")
	b.WriteString(summary)
	b.WriteString("\n## Targets\n\n")
	writeTargets(&b, targets)

	b.WriteString("\n## Session lifecycle, all rows\n\n")
	b.WriteString("`BenchmarkLifecycle/<backend>/<impl>/<size>/<mode>/<serial|parallel>` in `gfsession_z_bench_test.go` and `gfsession_z_bench_<backend>_test.go`. Each operation picks one of 1024 pre-filled sessions at random. memory-1k / memory-1M: that many live sessions in the storage (the others 1-key); file-100k: 100,000 session files in the folder, written once per run. serial: one goroutine; parallel: `b.RunParallel` with GOMAXPROCS goroutines (cpu). Columns hold gfsession / gf. miss/op counts reads that found nothing although the session was there (gf's file storage truncates a file before rewriting it, so concurrent readers can see an empty session). cmds/op: Redis commands per operation from `INFO commandstats` deltas; rt/op: Redis round trips per operation, counted by a TCP proxy in a separate untimed pass (a pipeline or a Lua script counts once); redis CPU µs/op: CPU time redis-server used per operation (`INFO cpu` deltas; it includes the per-round-trip cost of the event loop and syscalls, not only command execution).\n\n")
	b.WriteString("| backend | size | mode | run | cpu | ns/op ours | ns/op gf | ops/s ours/gf | allocs/op | B/op | cmds/op | rt/op | redis CPU µs/op | miss/op |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range l.order {
		o, g, ok := l.pair(k)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			k.Backend, k.Size, k.Mode, k.Variant, k.CPU, ns(o.Metrics["ns/op"]), ns(g.Metrics["ns/op"]), fx(l.speedup(k)),
			vs(o, g, "allocs/op"), vs(o, g, "B/op"), vs(o, g, "cmds/op"), vs(o, g, "rt/op"), vs(o, g, "redis-cpu-µs/op"), vs(o, g, "miss/op"))
	}

	// Footprint.
	for _, k := range l.order {
		o, g, ok := l.pair(k)
		if !ok || k.Backend != "memory-1M" {
			continue
		}
		if _, has := o.Metrics["B/session"]; !has {
			continue
		}
		b.WriteString("\n## Memory per live session at 1M\n\n")
		b.WriteString("Heap growth (`runtime.MemStats.HeapAlloc` after GC, before and after filling) divided by the number of sessions filled (1,048,576 − 1024 one-key sessions: a 32-character id, one key, a 16-byte string value). The bare map is `map[id]map[key]value` holding the same sessions, the least any in-memory store needs; overhead is what a storage takes beyond it.\n\n")
		b.WriteString("| storage | bytes per session | overhead over the bare map |\n|---|---:|---:|\n")
		fmt.Fprintf(&b, "| gfsession StorageMemory | %s | %s |\n", num(o.Metrics["B/session"]), num(o.Metrics["overhead-B/session"]))
		fmt.Fprintf(&b, "| gf StorageMemory (gcache) | %s | %s |\n", num(g.Metrics["B/session"]), num(g.Metrics["overhead-B/session"]))
		fmt.Fprintf(&b, "| bare map | %s | 0 |\n", num(o.Metrics["B/session"]-o.Metrics["overhead-B/session"]))
		break
	}

	// The floor.
	var floor []string
	for _, k := range l.order {
		if k.Backend != "manager" || k.CPU != 1 {
			continue
		}
		f := l.rows[k]["floor"]
		o, g, ok := l.pair(rowKey{"memory-1k", k.Size, k.Mode, k.Variant, k.CPU})
		if !ok {
			continue
		}
		ceiling, _ := floorCeiling(l, k.Size, k.Mode)
		floor = append(floor, fmt.Sprintf("| %s | %s | %s (%s allocs) | %s (%s allocs) | %s (%s allocs) | %s |", k.Size, k.Mode,
			ns(f.Metrics["ns/op"]), num(f.Metrics["allocs/op"]), ns(o.Metrics["ns/op"]), num(o.Metrics["allocs/op"]),
			ns(g.Metrics["ns/op"]), num(g.Metrics["allocs/op"]), fx(ceiling)))
	}
	if len(floor) > 0 {
		b.WriteString("\n## The floor under the memory rows\n\n")
		b.WriteString("`BenchmarkManagerFloor` runs the same lifecycle through `gsession.Manager` on a storage that does nothing (one shared map, writes dropped): what gf's Session costs by itself, paid by every storage. Serial, 1 core, next to memory-1k. The last column, gf's time divided by the floor, is the speed-up over gf of a storage that does no work at all. A storage that hands gf's Session the session's map, as every storage here does so that Gets cost no storage call, cannot exceed it: where it is under 2×, no such storage, isolated or not, can be 2× gf.\n\n")
		b.WriteString("| size | mode | floor | gfsession memory | gf memory | gf ÷ floor |\n|---|---|---:|---:|---:|---:|\n")
		b.WriteString(strings.Join(floor, "\n") + "\n")
	}

	b.WriteString("\n## HTTP load, all rows\n\n")
	b.WriteString("One ghttp server per row on 127.0.0.1 (access log off), the storage set with `SetSessionStorage`, `SessionMaxAge` 1h. Each connection is a virtual user with its own pre-logged-in session cookie and sends requests back to back over keep-alive. GET /read: `r.Session.Get` of 3 keys; POST /write: `r.Session.Set` of 1 key to a new value; limit: one raw `GET` through the same gredis client (of a value the size of gfsession's Redis session), no session; ghttp: a handler touching no session, the ceiling of the server itself. cmds/req from `INFO commandstats` deltas over the measured window, redis-server CPU per request from `INFO cpu` deltas. Every case ran in each round; req/s, p50, p99 and the Redis columns are those of its median round, and the ratios are the median of the per-round ratios (ours and gf, or ours and the limit, of the same round).\n\n")
	b.WriteString("| backend | size | endpoint | impl | req/s | req/s per round | p50 | p99 | Redis cmds/req | redis-server CPU µs/req | ours/gf | ours/limit |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range hr {
		ratio, lim := "", ""
		if r.Impl == ours {
			ratio = fx(h.ratio(r.Backend, r.Size, r.Endpoint))
			if (r.Backend == "redis" || r.Backend == "redis-hash") && r.Endpoint == "GET" {
				lim = fx(h.vsLimit(r.Size, r.Backend))
			}
		}
		cmds, usec := "—", "—"
		if r.CmdsPerReq >= 0 {
			cmds = num(r.CmdsPerReq)
			usec = num(r.RedisCPU)
		}
		errs := ""
		if r.Errors > 0 {
			errs = fmt.Sprintf(" (%d errors)", r.Errors)
		}
		var rounds []string
		for _, v := range r.RoundsRPS {
			rounds = append(rounds, num(v))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s |\n", r.Backend, r.Size, r.Endpoint, r.Impl,
			num(r.RPS), errs, strings.Join(rounds, " / "), ns(r.P50*1e3), ns(r.P99*1e3), cmds, usec, ratio, lim)
	}

	if a, err := os.ReadFile(filepath.Join(root, "hack", "bench", "analysis.md")); err == nil {
		b.WriteString("\n")
		b.Write(a)
	}

	docs := filepath.Join(root, "docs")
	if err := os.MkdirAll(docs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(docs, "benchmarks.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := writeChart(filepath.Join(docs, "benchmarks.png"), l, h); err != nil {
		return err
	}
	log.Printf("wrote docs/benchmarks.md and docs/benchmarks.png")
	return updateReadme(filepath.Join(root, "README.md"), m, summary)
}

// writeTargets writes `targets` as a markdown list, each marked met or not.
func writeTargets(b *strings.Builder, targets []target) {
	for _, t := range targets {
		mark := "✅"
		if !t.ok {
			mark = "❌"
		}
		fmt.Fprintf(b, "- %s **%s** — %s\n", mark, t.name, t.detail)
	}
}

// updateReadme replaces the block between the BENCHMARKS markers.
func updateReadme(path string, m machine, summary string) error {
	const start, end = "<!-- BENCHMARKS -->", "<!-- /BENCHMARKS -->"
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, start)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		log.Printf("README.md has no %s ... %s block: not updated", start, end)
		return nil
	}
	var blk strings.Builder
	blk.WriteString(start + "\n")
	fmt.Fprintf(&blk, "Measured side by side with gf's built-in storages in one run (%s, %d cores, %s, Redis %s); details, all rows and what limits each figure: [docs/benchmarks.md](docs/benchmarks.md).\n\n",
		m.CPUModel, m.NumCPU, goShort(m.GoVersion), m.RedisVersion)
	blk.WriteString("![gfsession ÷ gf](docs/benchmarks.png)\n\n")
	blk.WriteString(summary)
	took := ""
	if total := m.GoTestMinutes + m.HTTPMinutes; total > 0 {
		took = fmt.Sprintf("; the whole run took about %.0f minutes here", total)
	}
	fmt.Fprintf(&blk, "\nReproduce (starts its own redis-server on 127.0.0.1%s):\n\n```sh\ncd hack/bench && go run .\n```\n", took)
	blk.WriteString(end)
	s = s[:i] + blk.String() + s[j+len(end):]
	return os.WriteFile(path, []byte(s), 0o644)
}

// goShort returns "go1.x.y" out of `go version` output.
func goShort(v string) string {
	for _, f := range strings.Fields(v) {
		if strings.HasPrefix(f, "go1") {
			return f
		}
	}
	return v
}
