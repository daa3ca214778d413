package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
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
	sizes       = []string{"1key", "10keys", "100keys"}
	httpBackend = []string{"memory", "file", "redis", "redis-hash"}
)

// summaryTables is the part shared by docs/benchmarks.md and the READMEs:
// HTTP against gf, the peer, the lifecycle against gf, and a sentence for
// every row with a figure under 1×, in language `t`.
func summaryTables(t *lang, l lifecycle, peer lifecycle, h httpIndex) string {
	var b strings.Builder
	b.WriteString(t.httpIntro + "\n\n")
	b.WriteString(t.httpHeader + "\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, be := range httpBackend {
		for _, size := range sizes {
			og, ok1 := h.get(be, ours, size, "GET")
			gg, ok2 := h.get(be, gf, size, "GET")
			op, _ := h.get(be, ours, size, "POST")
			gp, _ := h.get(be, gf, size, "POST")
			if !ok1 && !ok2 {
				continue
			}
			cpuGet, cpuPost := "—", "—"
			if isRedis(be) {
				cpuGet = num(og.RedisCPU) + " / " + num(gg.RedisCPU)
				cpuPost = num(op.RedisCPU) + " / " + num(gp.RedisCPU)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", be, t.size(size),
				fx(h.ratio(be, size, "GET")), fx(h.ratio(be, size, "POST")),
				num(og.RPS), num(gg.RPS), num(op.RPS), num(gp.RPS), cpuGet, cpuPost)
		}
	}
	if len(peer.order) > 0 {
		b.WriteString("\n" + t.peerIntro + "\n\n")
		b.WriteString(t.peerHeader + "\n")
		b.WriteString("|---|---|---:|---:|---:|---:|\n")
		for _, be := range peer.backends() {
			for _, size := range sizes {
				ro, rw := rowKey{be, size, "ro", "serial", 1}, rowKey{be, size, "rw", "serial", 1}
				oro, sro, ok := peer.peerPair(ro)
				orw, srw, _ := peer.peerPair(rw)
				if !ok {
					continue
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s / %s | %s / %s |\n", strings.TrimPrefix(be, "peer-"), t.size(size),
					fx(peer.peerSpeedup(ro)), fx(peer.peerSpeedup(rw)),
					ns(oro.Metrics["ns/op"]), ns(sro.Metrics["ns/op"]), ns(orw.Metrics["ns/op"]), ns(srw.Metrics["ns/op"]))
			}
		}
	}
	b.WriteString("\n" + t.lifeIntro + "\n\n")
	b.WriteString(t.lifeHeader + "\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|\n")
	for _, be := range l.backends() {
		for _, size := range sizes {
			k := func(mode, variant string, cpu int) rowKey { return rowKey{be, size, mode, variant, cpu} }
			o, g, ok := l.pair(k("rw", "serial", 1))
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", be, t.size(size),
				fx(l.speedup(k("rw", "serial", 1))), fx(l.speedup(k("ro", "serial", 1))),
				fx(l.speedup(k("rw", "parallel", 2))), fx(l.speedup(k("ro", "parallel", 2))),
				vs(o, g, "allocs/op"))
		}
	}
	if under := underOne(t, l, peer, h); len(under) > 0 {
		b.WriteString("\n" + t.underIntro + "\n\n")
		for _, u := range under {
			b.WriteString("- " + u + "\n")
		}
	}
	return b.String()
}

func isRedis(backend string) bool { return backend == "redis" || backend == "redis-hash" }

// peerPair returns gfsession's peer row and scs's for k.
func (l lifecycle) peerPair(k rowKey) (o, s benchRow, ok bool) {
	m := l.rows[k]
	o, ok1 := m[ours]
	s, ok2 := m["scs"]
	return o, s, ok1 && ok2
}

// peerSpeedup is gfsession ÷ scs's operations per second.
func (l lifecycle) peerSpeedup(k rowKey) float64 {
	o, s, ok := l.peerPair(k)
	if !ok || o.Metrics["ns/op"] == 0 {
		return math.NaN()
	}
	return s.Metrics["ns/op"] / o.Metrics["ns/op"]
}

// lang is the text of the README block in one language.
type lang struct {
	readme                string // file name in the module root
	machine               string // format: CPU, cores, Go, Redis
	machineTwoRuns        string // format: CPU, cores, Go, Redis, date of the HTTP and peer run, date of the lifecycle run
	httpIntro, httpHeader string
	peerIntro, peerHeader string
	lifeIntro, lifeHeader string
	underIntro            string
	http, peer, life      string // formats of an under-1× sentence (see underOne)
	oneCore, twoCores     string // the lifecycle figures of one column, joined by `also`
	also                  string
	read, write           string // "read"/"write" in those sentences
	reproduce, took       string
	size                  func(size string) string
	whyUnder              map[string]string
	seeDocs               string
}

var english = &lang{
	readme:         "README.md",
	machine:        "Measured in one run on one machine (%s, %d cores, %s, Redis %s); every target, all rows, profiles and what limits each figure: [docs/benchmarks.md](docs/benchmarks.md).",
	machineTwoRuns: "Measured on one machine (%s, %d cores, %s, Redis %s): the HTTP and peer tables in one run (%s), the lifecycle table in another (%s). Every target, all rows, profiles and what limits each figure: [docs/benchmarks.md](docs/benchmarks.md).",
	httpIntro:      "**Over HTTP**, through a real `ghttp` server on 127.0.0.1 (GET reads 3 session keys, POST sets 1): requests per second, gfsession ÷ gf's built-in storage of the same kind, in the same run (the median of the per-round ratios of 5 rounds). Above 1 gfsession is faster. The redis-server columns are the CPU time Redis spent per request (`INFO cpu`).",
	httpHeader:     "| backend | session | GET ours/gf | POST ours/gf | GET req/s (ours / gf) | POST req/s (ours / gf) | redis-server µs per GET (ours / gf) | per POST (ours / gf) |",
	peerIntro:      "**Next to the most used Go session manager**, [alexedwards/scs](https://github.com/alexedwards/scs) v2, which also gives every request its own copy of the session: its memstore, and its redisstore (over redigo) on the same private Redis, doing the same work as the lifecycle below with the same sessions (`go test`, 1 core, the median of 5 runs; operations per second, gfsession ÷ scs).",
	peerHeader:     "| backend | session | read-only ours/scs | read-write ours/scs | time read-only (ours / scs) | time read-write (ours / scs) |",
	lifeIntro:      "**The session lifecycle** through `gsession.Manager` (`go test -bench`; rw = load, 3 gets, 1 set, close; ro = load, 3 gets, close; the median of 5 runs): operations per second, gfsession ÷ gf's built-in storage of the same kind, same backend, same run.",
	lifeHeader:     "| backend | session | rw, 1 core | ro, 1 core | rw, 2 cores parallel | ro, 2 cores parallel | allocs/op rw (ours / gf) |",
	underIntro:     "**Where gfsession is under 1×**, and the promise that costs it:",
	http:           "HTTP %s %s: %s. %s.",
	peer:           "%s against scs, %s: %s. %s.",
	life:           "Lifecycle %s %s: %s. %s.",
	oneCore:        "1 core %s",
	twoCores:       "2 cores parallel %s",
	also:           "; ",
	read:           "read",
	write:          "write",
	reproduce:      "Reproduce (starts its own redis-server on 127.0.0.1%s):",
	took:           "; the whole run took about %.0f minutes here",
	size: func(size string) string {
		return strings.NewReplacer("keys", " keys", "key", " key").Replace(size)
	},
	whyUnder: map[string]string{
		"memory/read":      "every request gets its own copy of the session, so that it never sees another request's half-done changes; gf's memory storage hands every request the same map and pays no copy",
		"memory/write":     "besides the request's own copy, a write stores a new copy that readers share and merges per key, so that concurrent requests setting different keys all survive; gf writes into the one shared map",
		"file/read":        "the file is named by the SHA-256 of the id, so that a copy of the folder holds no live session id, and its content is checked before use",
		"file/write":       "a write goes to a new file renamed over the session, so that a reader or a crash never sees a half-written session, and only if the session loaded is still the one stored, so that a logout is never undone; gf truncates the file and writes it in place",
		"redis/read":       "every read looks the session up by the SHA-256 of its id, so that a copy of Redis holds no live id, and restarts its idle TTL (at most once a second), so that a session in use never expires; gf leaves TTLs to a 10-second timer",
		"redis/write":      "a write is stored only if the session loaded is still the one stored (a script, not a plain SET), so that a logout running meanwhile is never undone",
		"redis-hash/read":  "a read loads every field in one round trip and decodes each into its Go type, where gf asks for only the keys read, one round trip each",
		"redis-hash/write": "a write first loads the session, to store only the keys the request changed and only while it is still the session loaded; gf's write-only request never reads it",
	},
	seeDocs: "see docs/benchmarks.md",
}

var chinese = &lang{
	readme:         "README.zh_CN.md",
	machine:        "以下数据在同一台机器上的一次运行中测得（%s，%d 核，%s，Redis %s）；每项目标的结论、全部数据行、性能剖析以及每项数据受什么限制，见 [docs/benchmarks.md](docs/benchmarks.md)。",
	machineTwoRuns: "以下数据在同一台机器上测得（%s，%d 核，%s，Redis %s）：HTTP 与 peer 两表在一次运行中（%s），生命周期表在另一次运行中（%s）。每项目标的结论、全部数据行、性能剖析以及每项数据受什么限制，见 [docs/benchmarks.md](docs/benchmarks.md)。",
	httpIntro:      "**HTTP**：通过 127.0.0.1 上真实的 `ghttp` 服务（GET 读取 3 个会话键，POST 设置 1 个）。数值为每秒请求数之比：gfsession ÷ 同一次运行中同类 gf 内置存储（5 轮中每轮比值的中位数），大于 1 表示 gfsession 更快。redis-server 列为 Redis 处理每个请求所用的 CPU 时间（`INFO cpu`）。",
	httpHeader:     "| 后端 | 会话 | GET gfsession/gf | POST gfsession/gf | GET 每秒请求数（gfsession / gf） | POST 每秒请求数（gfsession / gf） | 每个 GET 的 redis-server µs（gfsession / gf） | 每个 POST（gfsession / gf） |",
	peerIntro:      "**与最常用的 Go 会话管理器对比**：[alexedwards/scs](https://github.com/alexedwards/scs) v2，它同样给每个请求一份自己的会话副本。使用它的 memstore，以及在同一个私有 Redis 上的 redisstore（基于 redigo），完成与下面生命周期相同的工作、相同的会话（`go test`，单核，5 次运行的中位数；每秒操作数之比：gfsession ÷ scs）。",
	peerHeader:     "| 后端 | 会话 | 只读 gfsession/scs | 读写 gfsession/scs | 只读耗时（gfsession / scs） | 读写耗时（gfsession / scs） |",
	lifeIntro:      "**会话生命周期**：通过 `gsession.Manager`（`go test -bench`；rw = 加载、3 次 get、1 次 set、关闭；ro = 加载、3 次 get、关闭；5 次运行的中位数）。数值为每秒操作数之比：gfsession ÷ 同一后端、同一次运行中同类 gf 内置存储。",
	lifeHeader:     "| 后端 | 会话 | rw，单核 | ro，单核 | rw，2 核并行 | ro，2 核并行 | rw 每次操作分配次数（gfsession / gf） |",
	underIntro:     "**gfsession 低于 1× 的地方**，以及代价来自哪项承诺：",
	http:           "HTTP %s %s：%s。%s。",
	peer:           "%s 对比 scs，%s：%s。%s。",
	life:           "生命周期 %s %s：%s。%s。",
	oneCore:        "单核 %s",
	twoCores:       "2 核并行 %s",
	also:           "；",
	read:           "read",
	write:          "write",
	reproduce:      "复现（会在 127.0.0.1 上自行启动 redis-server%s）：",
	took:           "；在上述机器上整个运行约耗时 %.0f 分钟",
	size: func(size string) string {
		return strings.NewReplacer("keys", " 个键", "key", " 个键").Replace(size)
	},
	whyUnder: map[string]string{
		"memory/read":      "每个请求都拿到会话的一份自己的副本，从而永远看不到其他请求改了一半的内容；gf 的 memory 存储把同一个 map 交给每个请求，不付复制的代价",
		"memory/write":     "除了请求自己的副本，写入还要存一份供读者共享的新副本，并按键合并，使并发请求各自设置的不同键都能保留；gf 直接写进那一个共享 map",
		"file/read":        "文件以 id 的 SHA-256 命名，使目录的副本中没有任何有效的会话 id，且内容在使用前经过校验",
		"file/write":       "写入先写新文件再重命名覆盖会话，读者或崩溃都不会看到写了一半的会话；并且只有当所加载的会话仍是当前存储的那一个时才写入，退出登录永远不会被撤销；gf 则截断文件后原地写入",
		"redis/read":       "每次读取都以 id 的 SHA-256 查找会话，使 Redis 的副本中没有任何有效的会话 id，并重置空闲 TTL（每秒最多一次），使正在使用的会话永不过期；gf 则把 TTL 交给一个 10 秒定时器",
		"redis/write":      "只有当所加载的会话仍是当前存储的那一个时才写入（用脚本而非普通 SET），同时进行的退出登录永远不会被撤销",
		"redis-hash/read":  "一次读取在一个往返中加载全部字段，并把每个字段解码为其 Go 类型；gf 只取被读到的键，每个键一个往返",
		"redis-hash/write": "写入前先加载会话，只写请求改动过的键，并且只在它仍是所加载的会话时写入；gf 的只写请求从不读取会话",
	},
	seeDocs: "见 docs/benchmarks.md",
}

// underOne returns a sentence for every summary row with a figure under 1×:
// per backend and kind of request, the figures by session size, then the
// promise that costs them.
func underOne(t *lang, l, peer lifecycle, h httpIndex) []string {
	var out []string
	why := func(backend, kind string) string {
		be, _, _ := strings.Cut(backend, "-1")
		if r, ok := t.whyUnder[be+"/"+kind]; ok {
			return r
		}
		return t.seeDocs
	}
	// figures lists "0.85× (10 keys)" for every size under 1×.
	figures := func(ratio func(size string) float64) string {
		var parts []string
		for _, size := range sizes {
			if r := ratio(size); r < 1 {
				parts = append(parts, fmt.Sprintf("%s (%s)", fx(r), t.size(size)))
			}
		}
		return strings.Join(parts, ", ")
	}
	for _, be := range httpBackend {
		for _, ep := range []string{"GET", "POST"} {
			f := figures(func(size string) float64 { return h.ratio(be, size, ep) })
			if f != "" {
				kind := map[string]string{"GET": "read", "POST": "write"}[ep]
				out = append(out, fmt.Sprintf(t.http, be, ep, f, capitalize(why(be, kind))))
			}
		}
	}
	for _, be := range peer.backends() {
		for _, mode := range []string{"ro", "rw"} {
			f := figures(func(size string) float64 { return peer.peerSpeedup(rowKey{be, size, mode, "serial", 1}) })
			if f != "" {
				out = append(out, fmt.Sprintf(t.peer, strings.TrimPrefix(be, "peer-"), mode, f, capitalize(t.seeDocs)))
			}
		}
	}
	for _, be := range l.backends() {
		for _, mode := range []string{"ro", "rw"} {
			// Both columns of the table: serial on 1 core, parallel on 2.
			var cols []string
			if f := figures(func(size string) float64 { return l.speedup(rowKey{be, size, mode, "serial", 1}) }); f != "" {
				cols = append(cols, fmt.Sprintf(t.oneCore, f))
			}
			if f := figures(func(size string) float64 { return l.speedup(rowKey{be, size, mode, "parallel", 2}) }); f != "" {
				cols = append(cols, fmt.Sprintf(t.twoCores, f))
			}
			if len(cols) > 0 {
				kind := map[string]string{"ro": "read", "rw": "write"}[mode]
				out = append(out, fmt.Sprintf(t.life, be, mode, strings.Join(cols, t.also), capitalize(why(be, kind))))
			}
		}
	}
	return out
}

// capitalize upper-cases the first letter of `s`, a whole character: a
// Chinese sentence starts with a character of several bytes.
func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
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

// target is one checked performance target, met or not.
type target struct {
	name   string
	ok     bool
	detail string
}

func checkTargets(l, peer lifecycle, h httpIndex) []target {
	var ts []target
	// lowest returns the lowest of `f` over `names`, and every figure.
	lowest := func(names []string, f func(string) float64) (float64, string) {
		lo, parts := math.Inf(1), []string{}
		for _, n := range names {
			v := f(n)
			if math.IsNaN(v) {
				continue
			}
			parts = append(parts, n+" "+fx(v))
			lo = math.Min(lo, v)
		}
		return lo, strings.Join(parts, ", ")
	}
	httpNames := func(sizes []string, skip func(be, size, ep string) bool) []string {
		var out []string
		for _, be := range httpBackend {
			for _, size := range sizes {
				for _, ep := range []string{"GET", "POST"} {
					if skip == nil || !skip(be, size, ep) {
						out = append(out, be+" "+size+" "+ep)
					}
				}
			}
		}
		return out
	}
	httpRatio := func(n string) float64 {
		f := strings.Fields(n)
		return h.ratio(f[0], f[1], f[2])
	}
	if len(h) > 0 {
		lo, d := lowest(httpNames([]string{"1key", "10keys"}, nil), httpRatio)
		ts = append(ts, target{"HTTP: ≥ 1.0× gf on every backend, GET and POST, 1 and 10 keys", lo >= 1, d})
		redisHashPost := func(be, size, ep string) bool { return be == "redis-hash" && ep == "POST" }
		lo, d = lowest(httpNames([]string{"100keys"}, redisHashPost), httpRatio)
		lo2, d2 := lowest([]string{"redis-hash 100keys POST"}, httpRatio)
		ts = append(ts, target{"HTTP: ≥ 0.9× gf at 100 keys (redis-hash POST ≥ 0.8×)", lo >= 0.9 && !(lo2 < 0.8), d + "; " + d2})
		var cpu []string
		ok := true
		for _, be := range []string{"redis", "redis-hash"} {
			for _, size := range sizes {
				o, ok1 := h.get(be, ours, size, "GET")
				g, ok2 := h.get(be, gf, size, "GET")
				if !ok1 || !ok2 {
					continue
				}
				cpu = append(cpu, fmt.Sprintf("%s %s %s / %s µs", be, size, num(o.RedisCPU), num(g.RedisCPU)))
				ok = ok && o.RedisCPU <= g.RedisCPU
			}
		}
		if len(cpu) > 0 {
			ts = append(ts, target{"Redis: redis-server CPU per read-only request (HTTP GET) ≤ gf's", ok, "ours / gf: " + strings.Join(cpu, ", ")})
		}
	}
	life := func(backendPrefix, mode string, sizes []string) []string {
		var out []string
		for _, be := range l.backends() {
			if !strings.HasPrefix(be, backendPrefix) {
				continue
			}
			for _, size := range sizes {
				out = append(out, be+" "+size+" "+mode)
			}
		}
		return out
	}
	lifeRatio := func(n string) float64 {
		f := strings.Fields(n)
		return l.speedup(rowKey{f[0], f[1], f[2], "serial", 1})
	}
	if names := life("memory", "ro", []string{"1key", "10keys"}); len(names) > 0 {
		lo, d := lowest(names, lifeRatio)
		_, d100 := lowest(life("memory", "ro", []string{"100keys"}), lifeRatio)
		ts = append(ts, target{"Lifecycle: memory read-only ≥ 1.0× gf at 1 and 10 keys (serial, 1 core)", lo >= 1, d + "; at 100 keys: " + d100})
		lo, d = lowest(life("memory", "rw", []string{"1key", "10keys"}), lifeRatio)
		_, d100 = lowest(life("memory", "rw", []string{"100keys"}), lifeRatio)
		ts = append(ts, target{"Lifecycle: memory read-write ≥ 0.7× gf at 1 and 10 keys (serial, 1 core)", lo >= 0.7, d + "; at 100 keys: " + d100})
	}
	if names := life("file", "rw", sizes); len(names) > 0 {
		lo, d := lowest(names, lifeRatio)
		ts = append(ts, target{"Lifecycle: file read-write ≥ 0.8× gf (serial, 1 core)", lo >= 0.8, d})
	}
	if len(peer.order) > 0 {
		var names []string
		for _, be := range peer.backends() {
			for _, size := range sizes {
				for _, mode := range []string{"ro", "rw"} {
					names = append(names, strings.TrimPrefix(be, "peer-")+" "+size+" "+mode)
				}
			}
		}
		peerRatio := func(n string) float64 {
			f := strings.Fields(n)
			return peer.peerSpeedup(rowKey{"peer-" + f[0], f[1], f[2], "serial", 1})
		}
		var fast, writes []string
		for _, n := range names {
			if strings.HasPrefix(n, "redis ") && strings.HasSuffix(n, " rw") {
				writes = append(writes, n)
			} else {
				fast = append(fast, n)
			}
		}
		lo, d := lowest(fast, peerRatio)
		ts = append(ts, target{"Peer: ≥ 1.5× scs on memory (both modes) and on Redis read-only requests", lo >= 1.5, d})
		lo, d = lowest(writes, peerRatio)
		ts = append(ts, target{"Peer: ≥ 1.0× scs on Redis writing requests", lo >= 1, d})
	}
	return ts
}

func writeReport(root string, m machine, rows, peerRows []benchRow, hr []httpResult) error {
	l := indexRows(rows)
	peer := indexRows(peerRows)
	h := indexHTTP(hr)
	targets := checkTargets(l, peer, h)
	summary := summaryTables(english, l, peer, h)

	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("<!-- Generated by `cd hack/bench && go run .` from hack/bench/results/; edit hack/bench/report.go or hack/bench/analysis.md, not this file. -->\n\n")
	b.WriteString("gfsession's storages against gf's built-in storages of the same kind (`gsession.NewStorageMemory`, `NewStorageFile`, `NewStorageRedis`, `NewStorageRedisHashTable`), on the same backend, on one machine, each gfsession row measured side by side with gf's in the same run. Absolute figures depend on the machine; the ratios are what to read.\n\n")
	b.WriteString("![gfsession ÷ gf, per backend and endpoint](benchmarks.png)\n\n")

	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, `nproc` = %d (%s)\n", m.CPUModel, m.NumCPU, m.OS)
	fmt.Fprintf(&b, "- Go: `%s`\n", m.GoVersion)
	fmt.Fprintf(&b, "- Redis: %s (a private `redis-server` on 127.0.0.1, no persistence)\n", m.RedisVersion)
	if m.twoRuns() {
		fmt.Fprintf(&b, "- Date: %s (HTTP and peer); the lifecycle rows are from another run, %s\n", m.Date, m.GoTestDate)
	} else {
		fmt.Fprintf(&b, "- Date: %s\n", m.Date)
	}
	fmt.Fprintf(&b, "- Load average before / after go test / after the HTTP run: %s / %s / %s\n", m.Load, m.LoadAfterGoTest, m.LoadAfterHTTP)
	b.WriteString("- The HTTP load generator runs in the same process as the server and shares its cores.\n\n")

	b.WriteString("## How to run\n\n")
	b.WriteString("Everything (go test benchmarks, HTTP load run, this report, the chart and the README block):\n\n```sh\ncd hack/bench && go run .\n```\n\n")
	fmt.Fprintf(&b, "The lifecycle benchmarks alone, from the module root:\n\n```sh\n%s\n```\n\n", m.GoTestCommand)
	if m.PeerCommand != "" {
		fmt.Fprintf(&b, "The peer benchmarks alone, from hack/bench:\n\n```sh\n%s\n```\n\n", m.PeerCommand)
	}
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
	for _, t := range []*lang{english, chinese} {
		if err := updateReadme(root, t, m, summaryTables(t, l, peer, h)); err != nil {
			return err
		}
	}
	return nil
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

// updateReadme replaces the block between the BENCHMARKS markers of the
// README of language `t`.
func updateReadme(root string, t *lang, m machine, summary string) error {
	const start, end = "<!-- BENCHMARKS -->", "<!-- /BENCHMARKS -->"
	path := filepath.Join(root, t.readme)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, start)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		log.Printf("%s has no %s ... %s block: not updated", t.readme, start, end)
		return nil
	}
	var blk strings.Builder
	blk.WriteString(start + "\n")
	if m.twoRuns() {
		fmt.Fprintf(&blk, t.machineTwoRuns+"\n\n", m.CPUModel, m.NumCPU, goShort(m.GoVersion), m.RedisVersion, m.Date, m.GoTestDate)
	} else {
		fmt.Fprintf(&blk, t.machine+"\n\n", m.CPUModel, m.NumCPU, goShort(m.GoVersion), m.RedisVersion)
	}
	blk.WriteString(summary)
	took := ""
	if total := m.GoTestMinutes + m.PeerMinutes + m.HTTPMinutes; total > 0 {
		took = fmt.Sprintf(t.took, total)
	}
	fmt.Fprintf(&blk, "\n"+t.reproduce+"\n\n```sh\ncd hack/bench && go run .\n```\n", took)
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
